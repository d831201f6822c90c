"""The one exception that means 'the check could not be made' (exit status 3)."""


class CheckError(Exception):
    """Bad input or an unusable environment. The message is one line a user can act on."""


class NetworkError(CheckError):
    """The check started but the network stopped it (a resolver that does not answer).
    Still exit 3 for `check`; monitoring output reports it as an outage, not as bad input."""
