"""The provision peer: `deploy-node -p static` per node, filled in once deploy-node lands."""
from peers import PeerError


def provision(ctx, nodes, latency):
    def run():
        raise PeerError("deploy-node peer not written yet")

    return run
