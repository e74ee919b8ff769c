"""The MMdnn engine (``convert --engine mmdnn``): see :mod:`.engine`."""
