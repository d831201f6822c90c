"""The one exception that means 'the check could not be made' (exit status 3)."""


class CheckError(Exception):
    """Bad input or an unusable environment. The message is one line a user can act on."""
