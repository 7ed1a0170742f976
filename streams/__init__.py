"""Where beacons are filtered: the privacy filter (pure steps over an event), used
unchanged by the embedded pipeline and the Faust workers."""
