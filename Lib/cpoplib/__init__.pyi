# Stubs for the cpoplib package: poplib's API (as typeshed types it), the
# response-code exceptions, install()/uninstall() and __version__.
import sys

from ._cpoplib import (
    CR as CR,
    CRLF as CRLF,
    HAVE_SSL as HAVE_SSL,
    LF as LF,
    MAX_RESPONSE_SIZE as MAX_RESPONSE_SIZE,
    SCRAM_MAX_ITERATIONS as SCRAM_MAX_ITERATIONS,
    POP3 as POP3,
    POP3_PORT as POP3_PORT,
    POP3_SSL as POP3_SSL,
    POP3_SSL_PORT as POP3_SSL_PORT,
    _MAXLINE as _MAXLINE,
    error_proto as error_proto,
)
from ._response_codes import (
    AuthError as AuthError,
    InUseError as InUseError,
    LoginDelayError as LoginDelayError,
    ResponseCodeError as ResponseCodeError,
    SysPermError as SysPermError,
    SysTempError as SysTempError,
    UTF8Error as UTF8Error,
)

__all__ = ["POP3", "error_proto", "POP3_SSL"]

__version__: str

def install() -> None: ...
def uninstall() -> None: ...
