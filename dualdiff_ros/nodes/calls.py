"""Calling a dualdiff service from code that is not spinning the client's node."""
from __future__ import annotations


def call_sync(client, request, timeout: float = 10.0, resend_every: float | None = None):
    """Call a service from a thread that is not spinning the client's node; the reply, or TimeoutError.

    `resend_every` (seconds) is for requests that are safe to repeat, such as a proposal: while no
    reply has come, the request goes out again that often, and the first reply wins. Right after
    `wait_for_service` says yes, Fast DDS can still drop the reply, because the server's reply
    writer has not yet matched this client's reply reader (ros2/rmw_fastrtps#842); a request sent
    again a moment later gets through. Never set it for a request that changes state.
    """
    import threading
    import time

    done = threading.Event()
    futures = []
    deadline = time.monotonic() + timeout
    while True:
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        futures.append(future)
        left = deadline - time.monotonic()
        if done.wait(max(0.0, min(left, resend_every or left))) or time.monotonic() >= deadline:
            break
    answered = [f for f in futures if f.done()]
    for future in futures:
        if not future.done():
            client.remove_pending_request(future)
    if not answered:
        raise TimeoutError(f"{client.srv_name} did not answer within {timeout} s")
    return answered[0].result()
