"""deploy/container: the image installs exactly the runtime libraries the
binaries link, copies every source directory the build needs and every
script the manifests call; and the image deploy/container/build-image.sh
builds (mmdebstrap base, cached; buildah bud --isolation chroot
--pull=never) from the binaries under test (MQTTLB_PREBUILT: about 10 s with
the base cached, about 100 s when mmdebstrap makes it first) runs: its
mqttlb and mqttlb-broker, started in the image's root (buildah mount +
chroot, as the image's user; chroot shares the host network), carry an MQTT
round trip, and its HEALTHCHECK passes. MQTTLB_CONTAINER_TEST=source builds
from source instead (the build stage compiles mqttlb: many minutes on 2
cores, so opt-in); MQTTLB_CONTAINER_IMAGE=NAME tests an image already built.
Sanitizer builds are skipped (the image has no sanitizer runtime)."""
import json
import os
import re
import shutil
import subprocess
import unittest

import harness
from harness import free_port, port_open, wait_until
from lb_helpers import paho_round_trip
from deploy_helpers import DEPLOY, ROOT

CONTAINER = os.path.join(DEPLOY, "container")
CONTAINERFILE = os.path.join(CONTAINER, "Containerfile")
IMAGE_USER = "10001:10001"
CHROOT = "/usr/sbin/chroot"


def deps(var):
    """A package list of deploy/deps.sh, as bash expands it."""
    r = subprocess.run(["bash", "-c", f'. "$0" && echo ${var}', os.path.join(DEPLOY, "deps.sh")],
                       capture_output=True, text=True, timeout=30, check=True)
    return r.stdout.split()


def containerfile():
    with open(CONTAINERFILE) as f:
        return f.read()


def stages(text):
    """{stage name or index: body} of a Containerfile."""
    out, name, body = {}, None, []
    for line in text.splitlines():
        m = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line)
        if m:
            if body:
                out[name] = "\n".join(body)
            name = m.group(1) or f"stage{len(out)}"
            body = []
        elif name is not None:
            body.append(line)
    out[name] = "\n".join(body)
    return out


def package_of(soname):
    """The Debian package that ships the library the dynamic loader finds for soname."""
    r = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30)
    paths = [l.split("=>")[1].strip() for l in r.stdout.splitlines()
             if "=>" in l and l.split()[0] == soname]
    for path in paths:
        # dpkg knows the path the package installed: /lib or /usr/lib (merged /usr).
        other = path[4:] if path.startswith("/usr/") else "/usr" + path
        for cand in (path, os.path.realpath(path), other):
            q = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True, timeout=30)
            if q.returncode == 0:
                return q.stdout.split(":")[0].strip()
    return None


SANITIZER_LIBS = re.compile(r"^lib(asan|ubsan|tsan|lsan)\.so")


def needed(binary):
    r = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, timeout=30,
                       check=True)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)


class Image(harness.TestCase):
    def test_final_stage_installs_exactly_the_libraries_the_binaries_link(self):
        if not shutil.which("readelf") or not shutil.which("dpkg"):
            self.skipTest("readelf (binutils) or dpkg missing")
        final = list(stages(containerfile()).values())[-1]
        self.assertIn("mqttlb_install_deps $MQTTLB_RUNTIME_LIBS", final)
        self.assertEqual(final.count("apt-get") + final.count("mqttlb_install_deps"), 1,
                         "the final stage installs only MQTTLB_RUNTIME_LIBS")
        runtime = set(deps("MQTTLB_RUNTIME_LIBS"))
        linked = {}
        for b in ("mqttlb", "mqttlb-broker"):
            for so in needed(harness.binary(b)):
                if SANITIZER_LIBS.match(so):
                    continue  # a sanitizer build's runtime: never in the image
                linked.setdefault(package_of(so), set()).add(f"{b}: {so}")
        self.assertNotIn(None, linked, f"a library no package ships: {linked.get(None)}")
        self.assertEqual(sorted(set(linked) - runtime), [], "linked but not installed")
        # ca-certificates: the system store a backend's TLS verifies against.
        self.assertEqual(sorted(runtime - set(linked) - {"ca-certificates"}), [],
                         "installed but linked by neither binary")
        self.assertTrue(set(deps("MQTTLB_RUNTIME_LIBS")) <= set(deps("MQTTLB_RUN_DEPS")))

    def test_build_stage_has_every_source_directory_and_builds_both_binaries(self):
        build = stages(containerfile())["build"]
        self.assertIn("mqttlb_install_deps $MQTTLB_BUILD_DEPS", build)
        with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
            subdirs = re.findall(r"^\s*add_subdirectory\((\w+)\)", f.read(), re.M)
        copied = set(re.findall(r"^COPY (\w+) \1$", build, re.M))
        self.assertEqual(sorted(set(subdirs) - {"tests"} - copied), [],
                         "add_subdirectory without a COPY in the build stage")
        self.assertIn("-DMQTTLB_TESTS=OFF", build)
        self.assertIn("--target mqttlb mqttlb-broker", build)

    def test_every_script_is_in_the_image_and_parses(self):
        text = containerfile()
        for name in sorted(os.listdir(CONTAINER)):
            path = os.path.join(CONTAINER, name)
            if name == "Containerfile":
                continue
            r = subprocess.run(["bash", "-n", path], capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, f"{name}: {r.stderr}")
            self.assertTrue(os.access(path, os.X_OK), f"{name} is not executable")
            if name != "build-image.sh":  # runs on the host, not in the image
                self.assertIn(f"deploy/container/{name}", text)
        self.assertIn(f"USER {IMAGE_USER}", text)
        self.assertRegex(text, r'HEALTHCHECK .*\n\s*CMD \["/usr/local/bin/mqttlb-healthcheck"\]')


def containers():
    return set(subprocess.run(["buildah", "containers", "-q"], capture_output=True, text=True,
                              timeout=60, check=True).stdout.split())


class BuiltImage(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("buildah", "mmdebstrap"):
            if not shutil.which(tool):
                raise unittest.SkipTest(f"{tool} not installed (Debian package {tool})")
        bins = os.path.dirname(harness.binary("mqttlb"))
        if any(SANITIZER_LIBS.match(so) for so in needed(harness.binary("mqttlb"))):
            raise unittest.SkipTest("sanitizer build: the image has no sanitizer runtime")
        cls.image = os.environ.get("MQTTLB_CONTAINER_IMAGE")
        cls.built = None
        if not cls.image:
            env = dict(os.environ, MQTTLB_IMAGE=f"localhost/mqttlb:suite-{os.getpid()}")
            if os.environ.get("MQTTLB_CONTAINER_TEST") != "source":
                env["MQTTLB_PREBUILT"] = bins
            before = containers()
            r = subprocess.run(["nice", "-n", "19", os.path.join(CONTAINER, "build-image.sh")],
                               capture_output=True, text=True, timeout=3600, env=env,
                               stdin=subprocess.DEVNULL)
            assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
            cls.image = cls.built = r.stdout.split()[-1]
            cls.leftover = sorted(containers() - before)
        r = subprocess.run(["buildah", "inspect", "--type", "image", cls.image],
                           capture_output=True, text=True, timeout=60, check=True)
        cls.config = json.loads(r.stdout)["Docker"]["config"]
        cls.ctr = subprocess.run(["buildah", "from", "--pull=never", cls.image],
                                 capture_output=True, text=True, timeout=120,
                                 check=True).stdout.strip()
        cls.root = subprocess.run(["buildah", "mount", cls.ctr], capture_output=True, text=True,
                                  timeout=60, check=True).stdout.strip()

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["buildah", "umount", cls.ctr], capture_output=True, timeout=60)
        subprocess.run(["buildah", "rm", cls.ctr], capture_output=True, timeout=60)
        if cls.built:
            subprocess.run(["buildah", "rmi", cls.built], capture_output=True, timeout=60)

    def in_image(self, args, name, env=None):
        """A process in the image's root as its user (chroot execs it: our PID)."""
        return self.spawn([CHROOT, f"--userspec={IMAGE_USER}", self.root] + list(args),
                          name=name, env=env or {"PATH": "/usr/local/bin:/usr/bin:/bin"})

    def test_the_build_leaves_no_working_container(self):
        if not self.built:
            self.skipTest("MQTTLB_CONTAINER_IMAGE: not built here")
        self.assertEqual(self.leftover, [])

    def test_config_user_healthcheck_entrypoint(self):
        self.assertEqual(self.config["User"], IMAGE_USER)
        self.assertEqual(self.config["Entrypoint"], ["/usr/local/bin/mqttlb"])
        self.assertEqual(self.config["Healthcheck"]["Test"], ["CMD", "/usr/local/bin/mqttlb-healthcheck"])
        for port in ("1883/tcp", "8883/tcp", "9100/tcp", "9101/tcp"):
            self.assertIn(port, self.config["ExposedPorts"])

    def test_only_runtime_packages_no_compiler(self):
        installed = set()
        with open(os.path.join(self.root, "var/lib/dpkg/status")) as f:
            for para in f.read().split("\n\n"):
                name = re.search(r"^Package: (\S+)$", para, re.M)
                if name and re.search(r"^Status: install ok installed$", para, re.M):
                    installed.add(name.group(1))
        self.assertEqual(sorted(set(deps("MQTTLB_RUNTIME_LIBS")) - installed), [])
        self.assertEqual(sorted(p for p in installed if p.endswith("-dev") or p in ("g++", "cmake")),
                         [])
        r = subprocess.run([CHROOT, self.root, "ldd", "/usr/local/bin/mqttlb",
                            "/usr/local/bin/mqttlb-broker"], capture_output=True, text=True, timeout=30)
        self.assertNotIn("not found", r.stdout)

    def test_round_trip_through_the_images_mqttlb_and_broker(self):
        bport, port, mport, aport = free_port(), free_port(), free_port(), free_port()
        broker = self.in_image(["mqttlb-broker", "--port", str(bport), "--bind", "127.0.0.1"],
                               name="image-broker")
        wait_until(lambda: port_open(bport) or not broker.alive(), 10, what="image broker")
        cfg = {"listeners": [{"name": "mqtt", "bind": f"127.0.0.1:{port}"}],
               "backends": [{"name": "b1", "address": f"127.0.0.1:{bport}"}],
               "metrics": {"bind": f"127.0.0.1:{mport}"},
               "admin": {"bind": f"127.0.0.1:{aport}"},
               "limits": {"shutdown_grace_ms": 1000}}
        with open(os.path.join(self.root, "etc/mqttlb/test.json"), "w") as f:
            json.dump(cfg, f)
        lb = self.in_image(["mqttlb", "-c", "/etc/mqttlb/test.json"], name="image-mqttlb")
        lb.wait_for_line(r"listening: mqtt on", timeout=20)
        rc, got = paho_round_trip(port, "in-image", "img/t", b"hello")
        self.assertEqual((rc, got), (0, [b"hello"]))
        health = [CHROOT, f"--userspec={IMAGE_USER}", self.root, "/usr/local/bin/mqttlb-healthcheck"]
        env = {"PATH": "/usr/bin:/bin", "MQTTLB_ADMIN": f"127.0.0.1:{aport}"}
        wait_until(lambda: subprocess.run(health, env=env, capture_output=True,
                                          timeout=10).returncode == 0, 10, what="HEALTHCHECK passes")
        self.assertEqual(lb.stop(), 0, lb.output())
        broker.stop()


if __name__ == "__main__":
    harness.main()
