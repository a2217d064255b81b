"""Token authentication in one plain query.

DRF's TokenAuthentication builds an ORM query (token joined to its user) on every request; on the
queue's hot path that compile costs more CPU than the query. Same rules here: an unknown key or an
inactive user is refused; a deleted token stops working at once (nothing is cached).
"""

from functools import cache

from django.contrib.auth import get_user_model
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from .. import rows

# What requests read of the user; any other field loads on first access, like a deferred field.
USER_FIELDS = ("id", "username", "is_active", "is_staff", "is_superuser")
BOOLEANS = frozenset({"is_active", "is_staff", "is_superuser"})


@cache
def _statement() -> str:
    # Built on first use: the user model is known only once the apps are loaded.
    user = get_user_model()
    columns = ", ".join(f"u.{user._meta.get_field(f).column}" for f in USER_FIELDS)
    return (f"SELECT {columns} FROM {Token._meta.db_table} t JOIN {user._meta.db_table} u "
            f"ON u.{user._meta.pk.column} = t.user_id WHERE t.key = %s")


class FastTokenAuthentication(TokenAuthentication):
    model = Token

    def authenticate_credentials(self, key):
        row = rows.fetch_one(_statement(), [key])
        if row is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        # SQLite returns booleans as 0/1.
        user = rows.instance(get_user_model(), {f: bool(v) if f in BOOLEANS else v for f, v in zip(USER_FIELDS, row)})
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return user, rows.instance(Token, {"key": key, "user_id": user.pk})

