"""The Redis index: ids of ready and scheduled jobs, the claim scripts, wake-ups, the
reconciler's repairs and the API's rate limit. The only part of hybridq that imports redis.
Every key name comes from queue_core.keys; every script is a ``lua/*.lua`` file with its
contract in its header. May import the pure core only."""

from .client import RedisClient, check_redis, create_client, lua_script, translate_errors
from .rate_limit import RateLimiter
from .redis_index import RedisIndex
from .repair import IndexRepair

__all__ = [
    "IndexRepair",
    "RateLimiter",
    "RedisClient",
    "check_redis",
    "RedisIndex",
    "create_client",
    "lua_script",
    "translate_errors",
]
