"""The Paho interoperability scenarios (our re-implementation, see
test_broker_paho311.py / test_broker_paho5.py) against a 3-node cluster: the
suites' aclient connects to node 1, bclient to node 2 and every other client
to node 3, so each scenario's messages, retained messages, wills, shared
subscriptions and flow control cross peer links. Every node runs the suites'
ACL."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import main  # noqa: E402
from cluster_helpers import Cluster  # noqa: E402
from suite_clients import suite_acl  # noqa: E402
import test_broker_paho311 as p311  # noqa: E402  (modules, so their classes do not run here)
import test_broker_paho5 as p5  # noqa: E402


class OnCluster:
    def setUp(self):
        self.cl = Cluster(self, extra=["--acl", suite_acl(self)]).start_all()
        self.ours, self.port = self.cl.procs[0], self.cl.ports[0]
        self._clients = []
        self.aclient = self.suite_client("myclientid")
        self.bclient = self.suite_client("myclientid2")

    def ports(self):
        return self.cl.ports


class ClusterPaho311(OnCluster, p311.Paho311):
    pass


class ClusterPaho5(OnCluster, p5.Paho5):
    pass


if __name__ == "__main__":
    main()
