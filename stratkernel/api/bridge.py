"""Running the API on its own thread: a bridge that executes facade calls on the kernel's loop.

When the API shares the kernel's event loop, every request's work is interleaved with bar
processing. With :class:`KernelBridge` the API runs on another thread and event loop
(:class:`stratkernel.api.server.ApiThread`); each facade call is scheduled onto the kernel's loop as
one small task, and kernel events are forwarded to the API's loop with ``call_soon_threadsafe``.
The kernel and its objects are only ever touched from the kernel's own thread.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


class KernelBridge:
    """Wraps a ``KernelService`` living on ``kernel_loop`` for use from another thread's loop."""

    def __init__(self, service: Any, kernel_loop: asyncio.AbstractEventLoop) -> None:
        self.service = service
        self.kernel_loop = kernel_loop

    async def call(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(service)`` (sync or async) on the kernel's loop and return its result."""

        async def run() -> Any:
            result = fn(self.service)
            if inspect.isawaitable(result):
                result = await result
            return result

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), self.kernel_loop))

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], Any]:
        """Deliver kernel events to ``callback`` on the calling (API) loop; returns an unsubscribe."""
        api_loop = asyncio.get_running_loop()

        def forward(event: Any) -> None:
            # Runs in the kernel's emit: one thread-safe enqueue, whatever the number of clients.
            api_loop.call_soon_threadsafe(callback, event)

        unsubscribe: Callable[[], Any] = self.service.subscribe(forward)
        return unsubscribe


async def call_service(service: Any, fn: Callable[[Any], Any]) -> Any:
    """Run ``fn(service)`` where the service lives: directly, or through a :class:`KernelBridge`."""
    if isinstance(service, KernelBridge):
        return await service.call(fn)
    result = fn(service)
    if inspect.isawaitable(result):
        result = await result
    return result
