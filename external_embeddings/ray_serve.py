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

from .ray_score import connected, input_error, open_node_store, package_env

APP = "external_embeddings"


def application(settings, fingerprint, replicas=1):
    """The Ray Serve application: ``replicas`` copies of the server app, one CPU each."""
    from ray import serve

    from .server import create_app

    @serve.deployment(name="server", num_replicas=replicas,
                      ray_actor_options={"num_cpus": 1, "runtime_env": {"env_vars": dict(settings)}})
    @serve.ingress(create_app)  # built in each replica, after __init__ has checked the store
    class Server:
        def __init__(self):
            open_node_store(settings["KEE_SERVE_STORE"], fingerprint)

    return Server.bind()


def start(settings, fingerprint, replicas, host, port, proxies="EveryNode"):
    """Run the application on the connected cluster; return once every replica has started.

    ``proxies="HeadOnly"`` when several nodes share one machine (and so one port).
    """
    from ray import serve

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # Serve's start-up chatter; the command prints one line
    serve.start(http_options={"host": host, "port": port}, proxy_location=proxies)
    serve.run_many([serve.RunTarget(application(settings, fingerprint, replicas), name=APP, route_prefix="/")],
                   wait_for_applications_running=False)
    wait_until_running()


def wait_until_running(poll_seconds=0.5):
    """Return once every replica has started; raise a replica's InputError as soon as one refuses.

    Not ``serve.run``'s own wait: Ray Serve gives up on a deployment only when no replica has
    ever started, and retries a failing replica without end once another one has. So when one
    node's store copy differs and another's does not, ``serve.run`` would wait forever.
    """
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    while True:
        app = serve.status().applications.get(APP)
        if app is not None:
            if app.status == ApplicationStatus.RUNNING:
                return
            for message in [app.message, *(d.message for d in app.deployments.values())]:
                error = input_error(RuntimeError(message))  # the replica's traceback, as text
                if error is not None:
                    raise error
            if app.status == ApplicationStatus.DEPLOY_FAILED:
                raise RuntimeError(f"Ray Serve could not start {APP}: {app.message}")
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
            print(f"Serving {models} models at http://{host}:{port} with {replicas} replica(s) on Ray; "
                  "Ctrl-C stops.", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            serve.shutdown()
