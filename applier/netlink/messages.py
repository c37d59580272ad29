"""The messages a netlink reply is decoded into: pyroute2's, with attributes built only when read.

It exists apart from the socket (applier.netlink.socket) because it is the one
module that leans on pyroute2's decoding internals; the transport and the
encoders know nothing of how a reply is turned into objects.

pyroute2 decodes a message by making one Python object per attribute, and
the same again inside every nested attribute it is asked for. A link read
from the kernel carries ~40 attributes; a bridge's IFLA_INFO_DATA and a bridge
port's IFLA_INFO_SLAVE_DATA ~40 more each. A pod's ADD, CHECK and DEL read a
dozen of them (name, MTU, master, peer, hairpin), so building the rest is
most of the time a warm call spends decoding: a veth port read with its
hairpin flag takes ~460 µs built eagerly and ~250 µs built lazily.

`LazyNlas` walks the attribute headers only (4 bytes each) and puts a
`LazySlot` in the message's `attrs`: a pyroute2 `nla_slot` whose attribute
object is made, by pyroute2's own classes and in the way pyroute2's
`decode_nlas` makes it, the first time the slot is read. A nested attribute
is made lazy in turn, so only the path actually read is built. Values,
names and order are pyroute2's (tests/unit/test_lazy_nla.py compares them
with eager decoding on messages pyroute2 encodes, tests/integration/
test_rtnl_socket.py on messages read from the kernel). `RtnlMarshal` maps
the replies the socket reads (links, addresses, routes) to these classes.

It relies on pyroute2's decoding internals (`decode_nlas` and the compiled
attribute map), which is why pyroute2 is pinned to one version.
"""

from __future__ import annotations

import struct
import types
import weakref
from typing import Any, ClassVar

from pyroute2.netlink import NLA_F_NESTED, NLA_F_NET_BYTEORDER, nla_base, nla_slot
from pyroute2.netlink.marshal import Marshal
from pyroute2.netlink.rtnl import RTM_DELADDR, RTM_DELLINK, RTM_DELROUTE, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

_NLA_HEADER = struct.Struct("=HH")  # length, type
_NLA_FLAG_BITS = NLA_F_NESTED | NLA_F_NET_BYTEORDER
_UNKNOWN = "UNKNOWN"  # pyroute2's name for an attribute type its map does not know

_lazy_classes: dict[type, type] = {}
_names_of: dict[type, dict[int, str]] = {}


class LazySlot(nla_slot):
    """An `nla_slot` that knows its attribute's name and place, and builds the attribute on first use."""

    __slots__ = ("_built", "_length", "_name", "_offset", "_owner", "_type")

    def __init__(self, name: str, owner: weakref.ref, offset: int, length: int, nla_type: int) -> None:
        self._name, self._owner = name, owner
        self._offset, self._length, self._type = offset, length, nla_type
        self._built: tuple[str, Any] | None = None

    @property
    def cell(self) -> tuple[str, Any]:  # nla_slot reads everything through `cell`
        if self._built is None:
            owner = self._owner()
            if owner is None:
                raise ReferenceError("the netlink message this attribute came from is gone")
            self._built = (self._name, owner.build_nla(self._offset, self._length, self._type))
        return self._built

    @property
    def name(self) -> str:
        return self._name

    def __getitem__(self, key: Any) -> Any:
        return self._name if key == 0 else nla_slot.__getitem__(self, key)


def lazy_class(cls: type) -> type:
    """`cls` with lazy attributes (a subclass made once per class); a class without attributes as it is."""
    found = _lazy_classes.get(cls)
    if found is None:
        found = type(cls.__name__, (LazyNlas, cls), {"__slots__": ()}) if cls.nla_map else cls
        _lazy_classes[cls] = found
    return found


class LazyNlas:
    """Mixin for a pyroute2 message or attribute class: see the module docstring."""

    __slots__ = ()

    def _attr_map(self) -> Any:
        return self._nlmsg_base__t_nla_map  # pyroute2's compiled {type: {"name", "class", …}}

    def _names(self) -> dict[int, str] | None:
        """{type: name} of this class, kept per class; None when the map is computed per message."""
        cls = type(self)
        names = _names_of.get(cls)
        if names is None:
            attr_map = self._attr_map()
            if not isinstance(attr_map, dict):
                return None
            names = _names_of[cls] = {nla_type: prime["name"] for nla_type, prime in attr_map.items()}
        return names

    def decode_nlas(self, offset: int) -> None:
        """Slots for the attribute chain, as pyroute2 bounds it; no attribute object is made here."""
        names, attr_map = self._names(), self._attr_map()
        owner, append, data = weakref.ref(self), self["attrs"].append, self.data
        header, end, mask = _NLA_HEADER.unpack_from, self.offset + self.length, ~_NLA_FLAG_BITS
        while offset <= end - 4:  # the loop of every reply's every attribute: kept to plain operations
            length, nla_type = header(data, offset)
            if length < 4:
                length = 4
            if length > end - offset:
                length = end - offset
            if names is not None:
                name = names.get(nla_type & mask, _UNKNOWN)
            else:
                name = attr_map[nla_type & mask]["name"] if nla_type & mask in attr_map else _UNKNOWN
            append(LazySlot(name, owner, offset, length, nla_type))
            offset += (length + 3) & ~3

    def build_nla(self, offset: int, length: int, nla_type: int) -> Any:
        """The attribute object pyroute2's decode_nlas makes for the attribute at `offset`, made lazy."""
        attr_map, base_type = self._attr_map(), nla_type & ~_NLA_FLAG_BITS
        if base_type not in attr_map:
            return nla_base(data=self.data, offset=offset, length=length)
        prime = attr_map[base_type]
        nla_class = prime["class"]
        if isinstance(nla_class, types.FunctionType):  # the class depends on the message (a link's kind)
            nla_class = nla_class(self, data=self.data, offset=offset)
        nla = lazy_class(nla_class)(data=self.data, offset=offset, parent=self, length=length, init=prime["init"])
        nla._nla_array = prime["nla_array"]
        nla._nla_flags = nla_type & _NLA_FLAG_BITS
        return nla


class IndexedIfinfmsg(LazyNlas, ifinfmsg):
    """A link message whose `get("IFLA_…")` is one dict lookup, its attributes built when read.

    pyroute2's `get` walks every attribute of the message (a veth's has ~40)
    on each call, and a pod's ADD and CHECK read about a dozen attributes of
    each link they observe. The first call indexes the first attribute of
    each name (the one `get` returns); `LazyNlas` builds only the attributes
    read. Decoded messages are only read, so the index stays true.
    """

    __slots__ = ("_attr_slots",)

    def get(self, key: Any, default: Any = None) -> Any:
        if not (isinstance(key, str) and key.startswith("IFLA_")):
            return super().get(key, default)
        slots = getattr(self, "_attr_slots", None)
        if slots is None:
            slots = {}
            for slot in self["attrs"]:
                slots.setdefault(slot.name, slot)
            self._attr_slots = slots
        slot = slots.get(key)
        value = None if slot is None else slot.get_value()
        return default if value is None else value


class LazyIfaddrmsg(LazyNlas, ifaddrmsg):
    __slots__ = ()


class LazyRtmsg(LazyNlas, rtmsg):
    __slots__ = ()


class RtnlMarshal(Marshal):
    """pyroute2's Marshal, decoding the rtnetlink replies loxi-cni reads into the lazy classes above."""

    msg_map: ClassVar[dict[int, type]] = {
        RTM_NEWLINK: IndexedIfinfmsg,
        RTM_DELLINK: IndexedIfinfmsg,
        RTM_NEWADDR: LazyIfaddrmsg,
        RTM_DELADDR: LazyIfaddrmsg,
        RTM_NEWROUTE: LazyRtmsg,
        RTM_DELROUTE: LazyRtmsg,
    }
