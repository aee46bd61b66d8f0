"""``serve --ray``: the single-machine server's app, as replicas of a Ray Serve deployment.

Each replica is what a uvicorn worker is: ``server.create_app`` builds the same Starlette app
from the same ``KEE_SERVE_*`` settings (given to the replica's environment), so the API, its
errors, token and limits are one code. Ray Serve adds what one machine cannot: replicas on
many nodes behind one HTTP address, and a new replica when one dies. A replica first checks
its node's copy of the store against the fingerprint the command saw, and refuses to start if
they differ.
"""

import logging
import math
import time

from ..errors import InputError
from .ray_cluster import connected, input_error, open_node_store, package_env

APP = "external_embeddings"
START_TIMEOUT_S = 600  # models of a few GB load in a minute or two; anything slower is stuck
# Seconds after which Ray Serve reports a replica that no node has taken (its own default). Not
# shorter: until a worker has started on a node and unpickled the app, Serve counts the replica
# as unplaced too, and on a busy node that takes seconds.
UNPLACED_S = 30


def application(settings, fingerprint, replicas=1):
    """The Ray Serve application: ``replicas`` copies of the server app, one CPU each."""
    from ray import serve

    from .app import DEFAULTS, create_app

    # started = models loaded (server.create_app's lifespan); one thread, as the replica has one CPU.
    env = {"KEE_SERVE_THREADS": "1", **settings, "KEE_SERVE_LOAD_FIRST": "1"}
    # Serve's defaults are 5 requests under way per replica and a queue without end before them;
    # the app takes --limit-concurrency at once (it micro-batches them), and Serve's proxy queues at
    # most as many more, then answers 503 itself.
    limit = int(settings.get("KEE_SERVE_LIMIT_CONCURRENCY") or DEFAULTS["LIMIT_CONCURRENCY"])

    @serve.deployment(name="server", num_replicas=replicas, max_ongoing_requests=limit, max_queued_requests=limit,
                      ray_actor_options={"num_cpus": 1, "runtime_env": {"env_vars": env}})
    @serve.ingress(create_app)  # built in each replica, after __init__ has checked the store
    class Server:
        def __init__(self):
            open_node_store(settings["KEE_SERVE_STORE"], fingerprint)

    return Server.bind()


def start(settings, fingerprint, replicas, host, port, proxies="EveryNode", timeout_s=START_TIMEOUT_S, keep_alive_s=5):
    """Run the application on the connected cluster; return once it answers requests.

    That is, once every replica has loaded its models and ``/readyz`` answers 200 through
    Serve's proxy, so a client may send requests as soon as this returns. It never waits
    without end: more replicas than the cluster's CPUs is an error at once, a replica that no
    node takes is one once Serve reports it (after ``UNPLACED_S``), and anything still pending
    after ``timeout_s`` is one that names it. ``proxies="HeadOnly"`` when several nodes share one
    machine (and so one port).
    """
    import ray
    from ray import serve

    deadline = time.monotonic() + timeout_s
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # Serve's start-up chatter; the command prints one line
    cpus = ray.cluster_resources().get("CPU", 0)
    if replicas > cpus:  # Ray Serve would wait for the CPUs without end
        raise InputError(f"--replicas {replicas}", f"asks for {replicas} replicas of one CPU each, but the Ray "
                         f"cluster has {cpus:g} CPUs", f"ask for at most {int(cpus)} replicas, or add nodes")
    # Serve's controller reads when to report an unplaced replica from its environment: set here,
    # not left to the nodes' (honoured when this call starts Serve, not when Serve already runs).
    report_after = {name: str(UNPLACED_S) for name in ("RAY_SERVE_SLOW_STARTUP_WARNING_S",
                                                       "RAY_SERVE_SLOW_STARTUP_WARNING_PERIOD_S")}
    # Of the limits the uvicorn server has, Serve's proxy (its own uvicorn) takes only the keep-alive
    # timeout, in whole seconds; idle or slow connections to it are for a reverse proxy in front
    # (docs/security.md).
    keep_alive = max(1, math.ceil(keep_alive_s))
    serve.start(http_options={"host": host, "port": port, "keep_alive_timeout_s": keep_alive}, proxy_location=proxies,
                controller_options={"runtime_env": {"env_vars": report_after}})
    serve.run_many([serve.RunTarget(application(settings, fingerprint, replicas), name=APP, route_prefix="/")],
                   wait_for_applications_running=False)
    try:
        wait_until_running(deadline)
        wait_until_ready(host, port, settings.get("KEE_SERVE_TOKEN"), deadline)
    except TimeoutError as e:
        raise InputError("serve --ray", f"not ready after {timeout_s:g} s ({e})", "check `ray status` and the "
                         "replicas' logs, or give a longer --start-timeout if it is only slow") from None


def wait_until_running(deadline, poll_seconds=0.5):
    """Return once every replica has started (loaded its models); raise an InputError as soon as
    one refuses to start or cannot be placed, and TimeoutError, naming what is pending, at ``deadline``.

    Not ``serve.run``'s own wait: Ray Serve gives up on a deployment only when no replica has
    ever started, and retries a failing replica without end once another one has. So when one
    node's store copy differs and another's does not, ``serve.run`` would wait forever. Nor does
    it give up on a replica that no node has room for; it only says so in the deployment's message.
    """
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    while True:
        app = serve.status().applications.get(APP)
        pending = "Serve has not reported the application yet"
        if app is not None:
            if app.status == ApplicationStatus.RUNNING:
                return
            for message in [app.message, *(d.message for d in app.deployments.values())]:
                error = input_error(RuntimeError(message))  # the replica's traceback, as text
                if error is not None:
                    raise error
                if "to be scheduled" in message:  # Serve's words for a replica still waiting for a node
                    raise InputError("serve --ray", f"Ray cannot place every replica ({message.strip()})",
                                     "ask for fewer --replicas, free the CPUs that other work holds (`ray "
                                     "status` shows them), or add nodes")
            if app.status == ApplicationStatus.DEPLOY_FAILED:  # a failed deployment's message ends in the exception
                failed = [d.message for d in app.deployments.values() if d.status == "DEPLOY_FAILED"] or [app.message]
                reason = (failed[0].strip().splitlines() or ["no reason given"])[-1].strip()
                raise InputError("serve --ray", f"Ray Serve could not start the replicas ({reason})",
                                 "see the replicas' logs (`ray logs`, or the Ray dashboard)")
            pending = ("; ".join(_replicas(name, d) for name, d in app.deployments.items())
                       or f"application {app.status.value}")
        if time.monotonic() > deadline:
            raise TimeoutError(pending)
        time.sleep(poll_seconds)


def _replicas(name, deployment):
    """A deployment's replicas by state, as ``server: UPDATING, 1 RUNNING, 1 STARTING``."""
    states = ", ".join(f"{n} {getattr(state, 'value', state)}" for state, n in deployment.replica_states.items())
    return f"{name}: {deployment.status.value}" + (f", {states}" if states else "")


def wait_until_ready(host, port, token, deadline, poll_seconds=0.5):
    """Return once ``/readyz`` answers 200 through Serve's proxy; TimeoutError with its last answer at ``deadline``.

    Every replica has loaded its models before it counts as started (LOAD_FIRST), but Serve's
    proxy may not route to them yet; and a models folder that failed to load leaves the
    replica started but not ready (``/readyz`` says why, and this prints it once).
    """
    import httpx

    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/readyz"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reported, pending = None, "the proxy does not answer"
    while True:
        try:
            answer = httpx.get(url, headers=headers, timeout=10)
        except httpx.HTTPError as e:  # the proxy is still starting
            answer, pending = None, f"{url}: {str(e) or type(e).__name__}"
        if answer is not None:
            if answer.status_code == 200:
                return
            pending = f"{url} answers {answer.status_code}: {answer.text.strip()}"
            if answer.text != reported:  # a reason once, not every half second
                print(f"Not ready yet ({answer.status_code}): {answer.text}", flush=True)
                reported = answer.text
        if time.monotonic() > deadline:
            raise TimeoutError(pending)
        time.sleep(poll_seconds)


def serve_until_stopped(settings, fingerprint, address, replicas, host, port, models, timeout_s=START_TIMEOUT_S,
                        keep_alive_s=5):
    """The command: start Ray (or join ``address``), serve until Ctrl-C, then remove the app."""
    from ray import serve

    with connected(address, runtime_env=package_env()):
        try:
            try:
                start(settings, fingerprint, replicas, host, port, timeout_s=timeout_s, keep_alive_s=keep_alive_s)
            except Exception as e:
                raise input_error(e) or e
            print(f"Serving {models} models at http://{host}:{port} with {replicas} replica(s) on Ray; "
                  "Ctrl-C stops.", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            serve.shutdown()
