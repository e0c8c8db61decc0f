from typing import ClassVar

from ._cpoplib import error_proto

__all__ = [
    "ResponseCodeError",
    "InUseError",
    "LoginDelayError",
    "SysTempError",
    "SysPermError",
    "AuthError",
    "UTF8Error",
    "classify",
    "split_response_code",
]

def split_response_code(reply: object) -> tuple[str, str] | None: ...

class ResponseCodeError(error_proto):
    response_code: ClassVar[str]
    code: str
    text: str
    def __init__(self, *args: object) -> None: ...

class InUseError(ResponseCodeError): ...
class LoginDelayError(ResponseCodeError): ...
class SysTempError(ResponseCodeError): ...
class SysPermError(ResponseCodeError): ...
class AuthError(ResponseCodeError): ...
class UTF8Error(ResponseCodeError): ...

def classify(reply: object) -> type[ResponseCodeError] | None: ...
