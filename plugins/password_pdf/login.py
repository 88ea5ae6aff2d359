"""The portal login's password hash: the accounts service's (:mod:`siegel.passwords`), kept
importable here for code written before accounts moved into the core."""

from siegel import PASSWORD_PARAMETERS as PARAMETERS
from siegel import LoginCheck, check_password, hash_password

__all__ = ["PARAMETERS", "LoginCheck", "check_password", "hash_password"]
