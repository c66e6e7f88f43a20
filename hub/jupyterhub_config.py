"""JupyterHub for the course (started by `bash scripts/hub`; docs/hub.md).

Local accounts log in with their system password (PAM). Members of the group onions-students
get JupyterLab with nbgrader's Assignments tab and Validate, and no Formgrader, Courses or
Create Assignment; members of onions-instructors get everything, with their course directory
~/onions. Each role is a Jupyter configuration directory beside this file (students/,
instructors/), put first on the single-user server's JUPYTER_CONFIG_PATH, so nothing is
written to /etc/jupyter and the repository holds the whole set-up.
The hub runs as the unprivileged account scripts/hub makes (onions-hub), not as root.
Students' servers run from the student environment (ONIONS_STUDENT_ENV): a virtualenv made
from the student kit, and a copy of students/; the checkout, with the course's source, is
closed to them (scripts/hub; docs/hub.md, "Who sees what").

Settings come from the environment, which scripts/hub sets (defaults in brackets):
ONIONS_HUB_IP [127.0.0.1], ONIONS_HUB_PORT [8000] (the hub's API listens on PORT+1 and the
proxy's on PORT+2, all on 127.0.0.1), ONIONS_HUB_STATE [.hub] (database, cookie secret, pid
file), ONIONS_HUB_VENV [.venv] (the Python of the hub and of the instructors' servers),
ONIONS_STUDENT_ENV [/srv/onions/student] (the students' servers' Python and configuration),
ONIONS_EXCHANGE [/srv/nbgrader/exchange], ONIONS_DATA_DIR (the offline datasets, when not in
~/.cache/onions).
"""
import grp
import os
from pathlib import Path

from sudospawner import SudoSpawner

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STUDENTS, INSTRUCTORS = "onions-students", "onions-instructors"

c = get_config()  # noqa: F821 (provided by traitlets)
ip = os.environ.get("ONIONS_HUB_IP", "127.0.0.1")
port = int(os.environ.get("ONIONS_HUB_PORT", "8000"))
state = Path(os.environ.get("ONIONS_HUB_STATE", ROOT / ".hub")).resolve()
venv = Path(os.environ.get("ONIONS_HUB_VENV", ROOT / ".venv")).absolute()  # not resolved: its bin/python may be a link
student_env = Path(os.environ.get("ONIONS_STUDENT_ENV", "/srv/onions/student")).absolute()

c.JupyterHub.bind_url = f"http://{ip}:{port}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{port + 1}"
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True  # a stopped hub stops the students' servers too

# The proxy: configurable-http-proxy from npm, installed by scripts/hub into the state folder.
c.ConfigurableHTTPProxy.command = [str(state / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{port + 2}"
c.ConfigurableHTTPProxy.pid_file = str(state / "configurable-http-proxy.pid")
c.ConfigurableHTTPProxy.should_start = True

# Who may log in: the course's groups, with their system passwords.
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_groups = {STUDENTS, INSTRUCTORS}  # PAMAuthenticator is a LocalAuthenticator
c.Authenticator.admin_groups = {INSTRUCTORS}
c.LocalAuthenticator.create_system_users = False  # accounts are made once, by scripts/hub adduser

# The hub runs as an unprivileged account (scripts/hub makes it, onions-hub): it starts each
# account's server through sudo and sudospawner's mediator, which runs the jupyterhub-singleuser
# beside it (the sudoers rule names this venv's mediator; Spawner.cmd is not used).
def role(spawner) -> str:
    """'instructors' or 'students', from the account's groups (an instructor in both is an instructor)."""
    try:
        if spawner.user.name in grp.getgrnam(INSTRUCTORS).gr_mem:
            return "instructors"
    except KeyError:
        pass
    return "students"


def bin_folder(spawner) -> Path:
    """The role's virtualenv's bin/: the student environment's for students, the course's for instructors."""
    return (student_env / "venv" if role(spawner) == "students" else venv) / "bin"


class CourseSpawner(SudoSpawner):
    """sudospawner, with the mediator of the account's role (each is named by its own sudoers line)."""

    async def do(self, action, **kwargs):
        self.sudospawner_path = str(bin_folder(self) / "sudospawner")
        return await super().do(action, **kwargs)


c.JupyterHub.spawner_class = CourseSpawner
c.SudoSpawner.sudospawner_path = str(venv / "bin" / "sudospawner")
c.SudoSpawner.mediator_log_level = "INFO"  # its --logging=INFO is part of the sudoers rule
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.http_timeout = 120  # two cores shared: JupyterLab can take a while to answer the first time
c.Spawner.start_timeout = 120


def environment(name, default=None):
    value = os.environ.get(name, default)
    return {name: value} if value else {}


def role_environment(spawner):
    """JUPYTER_CONFIG_PATH first names the role's folder: the student environment's copy of students/."""
    return str(student_env / "jupyter" if role(spawner) == "students" else HERE / "instructors")


def role_path(spawner):
    """PATH starts with the role's Python."""
    return f"{bin_folder(spawner)}:/usr/local/bin:/usr/bin:/bin"


c.Spawner.environment = {
    "JUPYTER_CONFIG_PATH": role_environment,
    "PATH": role_path,
    **environment("ONIONS_EXCHANGE", "/srv/nbgrader/exchange"),
    **environment("ONIONS_DATA_DIR"),
}
