"""What routes depend on: the services (built once in the lifespan) and the caller's tenant."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis
import redis.asyncio
from fastapi import Depends, Header, Request

from workers.datasets import DataSettings
from workers.predict import PredictorCache
from workers.records import Records
from workers.settings import Settings
from workers.spec import SpecLimits
from workers.store import LocalStore
from workers.uploads import Uploads

from .auth import KeyRing, hash_key
from .errors import ApiError


@dataclass
class Services:
    settings: Settings
    records: Records
    rq: redis.Redis              # RQ's own client (bytes)
    aredis: redis.asyncio.Redis  # for hot read paths that need no thread (GET /v1/jobs/{id})
    store: LocalStore
    uploads: Uploads
    keys: KeyRing
    predictors: PredictorCache
    data_settings: DataSettings

    @property
    def limits(self) -> SpecLimits:
        return SpecLimits.from_settings(self.settings)


async def services(request: Request) -> Services:
    return request.app.state.services


async def tenant(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The caller's tenant from ``Authorization: Bearer <key>``; 401 otherwise."""
    keys = request.app.state.services.keys
    scheme, _, key = (authorization or "").partition(" ")
    if not authorization:
        raise ApiError(401, "missing_api_key", "send your API key as 'Authorization: Bearer <key>' (`fita keys "
                       "create` makes one; `make run` prints the local one)", headers={"WWW-Authenticate": "Bearer"})
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "invalid_authorization", "the Authorization header must be 'Bearer <key>'",
                       headers={"WWW-Authenticate": "Bearer"})
    found = keys.tenant(key.strip())
    request.state.key_id = hash_key(key.strip())[:16]     # rate limits are per key
    if found is None:
        raise ApiError(401, "invalid_api_key", "this API key is not valid (it may have been revoked)",
                       headers={"WWW-Authenticate": "Bearer"})
    return found


ServicesDep = Annotated[Services, Depends(services)]
TenantDep = Annotated[str, Depends(tenant)]
