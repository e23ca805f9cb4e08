"""The one place the vmyard version lives."""

VERSION = "0.1.0"
# What /version/ reports as the MAAS API level we emulate.
MAAS_COMPAT_VERSION = "3.5.0"
PROTOCOL_VERSION = 1
