"""``serve --ray``: the single-machine server's app, as replicas of a Ray Serve deployment.

Each replica is what a uvicorn worker is: ``server.create_app`` builds the same Starlette app
from the same ``KEE_SERVE_*`` settings (given to the replica's environment), so the API, its
errors, token and limits are one code. Ray Serve adds what one machine cannot: replicas on
many nodes behind one HTTP address, and a new replica when one dies. A replica first checks
its node's copy of the store against the fingerprint the command saw, and refuses to start if
they differ.
"""

import logging
import time

from .errors import InputError
from .ray_score import connected, input_error, open_node_store, package_env

APP = "external_embeddings"
START_TIMEOUT_S = 600  # models of a few GB load in a minute or two; anything slower is stuck


def application(settings, fingerprint, replicas=1):
    """The Ray Serve application: ``replicas`` copies of the server app, one CPU each."""
    from ray import serve

    from .server import create_app

    env = {**settings, "KEE_SERVE_LOAD_FIRST": "1"}  # started = models loaded (server.create_app's lifespan)

    @serve.deployment(name="server", num_replicas=replicas,
                      ray_actor_options={"num_cpus": 1, "runtime_env": {"env_vars": env}})
    @serve.ingress(create_app)  # built in each replica, after __init__ has checked the store
    class Server:
        def __init__(self):
            open_node_store(settings["KEE_SERVE_STORE"], fingerprint)

    return Server.bind()


def start(settings, fingerprint, replicas, host, port, proxies="EveryNode", timeout_s=START_TIMEOUT_S):
    """Run the application on the connected cluster; return once every replica has loaded its models.

    ``proxies="HeadOnly"`` when several nodes share one machine (and so one port).
    """
    import ray
    from ray import serve

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # Serve's start-up chatter; the command prints one line
    cpus = ray.cluster_resources().get("CPU", 0)
    if replicas > cpus:  # Ray Serve would wait for the CPUs without end
        raise InputError(f"--replicas {replicas}", f"asks for {replicas} replicas of one CPU each, but the Ray "
                         f"cluster has {cpus:g} CPUs", f"ask for at most {int(cpus)} replicas, or add nodes")
    serve.start(http_options={"host": host, "port": port}, proxy_location=proxies)
    serve.run_many([serve.RunTarget(application(settings, fingerprint, replicas), name=APP, route_prefix="/")],
                   wait_for_applications_running=False)
    wait_until_running(timeout_s)


def wait_until_running(timeout_s=START_TIMEOUT_S, poll_seconds=0.5):
    """Return once every replica has started; raise a replica's InputError as soon as one refuses.

    Not ``serve.run``'s own wait: Ray Serve gives up on a deployment only when no replica has
    ever started, and retries a failing replica without end once another one has. So when one
    node's store copy differs and another's does not, ``serve.run`` would wait forever. Nor does
    it give up on a replica that no node has room for; Serve says so after 30 s, and so does this.
    """
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    deadline = time.monotonic() + timeout_s
    while True:
        app = serve.status().applications.get(APP)
        messages = []
        if app is not None:
            if app.status == ApplicationStatus.RUNNING:
                return
            messages = [app.message, *(d.message for d in app.deployments.values())]
            for message in messages:
                error = input_error(RuntimeError(message))  # the replica's traceback, as text
                if error is not None:
                    raise error
                if "to be scheduled" in message:  # Serve's words for a replica that no node can take
                    raise InputError("serve --ray", f"Ray cannot place every replica: {message}",
                                     "ask for fewer --replicas, or add nodes with free CPUs")
            if app.status == ApplicationStatus.DEPLOY_FAILED:
                raise RuntimeError(f"Ray Serve could not start {APP}: {app.message}")
        if time.monotonic() > deadline:
            pending = "; ".join(m for m in messages if m) or "no status yet"
            raise InputError("serve --ray", f"the replicas did not start within {timeout_s:g} s ({pending})",
                             "check `ray status` and the replicas' logs, then start again")
        time.sleep(poll_seconds)


def wait_until_ready(host, port, token=None, poll_seconds=0.5):
    """Return once ``/readyz`` answers 200 through Serve's proxy, as the uvicorn server waits for its workers.

    Every replica has tried to load its models before it counted as started (LOAD_FIRST); this
    waits out a models folder that failed to load, until it is fixed, as ``serve`` does.
    """
    import httpx

    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/readyz"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reported = None
    while True:
        try:
            answer = httpx.get(url, headers=headers, timeout=10)
        except httpx.HTTPError:  # the proxy is still starting
            answer = None
        if answer is not None and answer.status_code == 200:
            return
        if answer is not None and answer.text != reported:  # a reason once, not every half second
            print(f"Not ready yet ({answer.status_code}): {answer.text}", flush=True)
            reported = answer.text
        time.sleep(poll_seconds)


def serve_until_stopped(settings, fingerprint, address, replicas, host, port, models):
    """The command: start Ray (or join ``address``), serve until Ctrl-C, then remove the app."""
    from ray import serve

    with connected(address, runtime_env=package_env()):
        try:
            try:
                start(settings, fingerprint, replicas, host, port)
            except Exception as e:
                raise input_error(e) or e
            wait_until_ready(host, port, settings.get("KEE_SERVE_TOKEN"))
            print(f"Serving {models} models at http://{host}:{port} with {replicas} replica(s) on Ray; "
                  "Ctrl-C stops.", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            serve.shutdown()
