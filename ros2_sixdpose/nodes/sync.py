"""Pairing camera topics: each image with its CameraInfo, and each DetectionArray with its image.

Image + CameraInfo use message_filters' approximate-time synchroniser where it is installed. Without it,
`CameraInfoCache` keeps the latest CameraInfo of each frame id and pairs it with every image of that
frame, which is what a camera driver publishes (one fixed calibration per camera). Either way an image
that finds no CameraInfo is handed on with None, so the node can say once what is missing.

Images are taken keep-last-1, so frames that arrive while the node is busy are replaced before any callback
sees them. `DropCounter` counts them from the gaps in each publisher's sequence numbers, for /diagnostics.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import CameraInfo, Image

try:
    import message_filters
except ImportError:  # not on PyPI; real ROS installs have it
    message_filters = None

T = TypeVar("T")
ImageCallback = Callable[[Image, CameraInfo | None], None]


class CameraInfoCache:
    """The latest CameraInfo of each frame id, paired with every image of the same frame id."""

    def __init__(self) -> None:
        self._latest: dict[str, CameraInfo] = {}

    def update(self, info: CameraInfo) -> None:
        """Remember `info` as its frame's calibration."""
        self._latest[info.header.frame_id] = info

    def match(self, image: Image) -> CameraInfo | None:
        """The CameraInfo of the image's frame id, or None if none has arrived.

        Its size is not checked here: the node rejects an image whose size differs, with both sizes.
        """
        return self._latest.get(image.header.frame_id)


class DropCounter:
    """Messages a subscription never handed on: gaps in each publisher's publication sequence numbers.

    Where the middleware gives no sequence numbers (some rmw implementations), nothing is counted.
    """

    def __init__(self) -> None:
        self.dropped = 0
        self._last: dict[bytes, int] = {}  # publisher gid -> its latest sequence number seen

    def add(self, info: MessageInfo) -> None:
        """Note the message described by `info`; count the ones of its publisher that were skipped."""
        sequence, gid = info.get("publication_sequence_number"), info.get("publisher_gid")
        if sequence is None or gid is None:
            return
        key = bytes(gid["data"])
        last = self._last.get(key)
        if last is not None and sequence > last + 1:
            self.dropped += sequence - last - 1
        self._last[key] = sequence


class StampBuffer(Generic[T]):
    """The last `capacity` items keyed by header stamp (ns), for pairing results with the frame they came from."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[int, T] = OrderedDict()

    def put(self, stamp: int, item: T) -> None:
        """Keep `item` under `stamp`, dropping the oldest item beyond capacity."""
        self._items[stamp] = item
        self._items.move_to_end(stamp)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def pop(self, stamp: int) -> T | None:
        """Remove and return the item of `stamp` (None if absent), dropping every older item with it."""
        if stamp not in self._items:
            return None
        while True:
            key, item = self._items.popitem(last=False)
            if key == stamp:
                return item

    def __len__(self) -> int:
        return len(self._items)


class CameraSubscriber:
    """Subscribes an image topic and a camera_info topic and calls `callback(image, info or None)` per image.

    With message_filters, pairs are matched by stamp within `slop` seconds; if `queue_size` + 1 images in a
    row find no CameraInfo, the newest is handed on with None. Without it, `CameraInfoCache` pairs them.
    Both subscriptions use `qos` and `group`, so the callback never runs twice at once in a
    MutuallyExclusiveCallbackGroup. `drops` counts the images replaced before a callback took them.
    """

    def __init__(
        self, node: Node, image_topic: str, info_topic: str, callback: ImageCallback, qos: QoSProfile,
        group: CallbackGroup, slop: float = 0.02, queue_size: int = 5,
    ) -> None:
        self._callback = callback
        self.drops = DropCounter()
        # The executor serves subscriptions in the order they were created: camera_info first, so an image and
        # the CameraInfo sent with it are paired even when both wait at once.
        if message_filters is None:
            self._cache = CameraInfoCache()
            node.create_subscription(CameraInfo, info_topic, self._cache.update, qos, callback_group=group)
        else:
            self._unpaired = 0
            self._limit = queue_size + 1
            self._images = message_filters.SimpleFilter()  # fed by _on_image
            info_sub = message_filters.Subscriber(node, CameraInfo, info_topic, qos_profile=qos, callback_group=group)
            self._sync = message_filters.ApproximateTimeSynchronizer([self._images, info_sub], queue_size, slop)
            self._sync.registerCallback(self._on_pair)
        # The image subscription is this class's own in both paths: only a plain subscription gets MessageInfo.
        node.create_subscription(Image, image_topic, self._on_image, qos, callback_group=group)

    def _on_image(self, image: Image, info: MessageInfo) -> None:
        """Count skipped images; then pair with the cached CameraInfo, or hand on to the synchroniser."""
        self.drops.add(info)
        if message_filters is None:
            self._callback(image, self._cache.match(image))
            return
        self._count_unpaired(image)
        self._images.signalMessage(image)

    def _count_unpaired(self, image: Image) -> None:
        """message_filters path: hand on an image without CameraInfo once too many went unpaired."""
        self._unpaired += 1
        if self._unpaired >= self._limit:
            self._unpaired = 0
            self._callback(image, None)

    def _on_pair(self, image: Image, info: CameraInfo) -> None:
        """message_filters path: a synchronised pair."""
        self._unpaired = 0
        self._callback(image, info)

