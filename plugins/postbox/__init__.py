"""The postbox: protected messages stay on the portal, in the recipient's account (issue 10).

:mod:`.mailbox` is the storage (:class:`~.mailbox.Mailbox`), :mod:`.method` the protection
method ``postbox`` with its invitation and registration, :mod:`.maintenance` retention, the bin
and the reminders; the pages are in ``portal.py``.
"""
