"""nbgrader for the course's instructors on the hub (their JUPYTER_CONFIG_PATH; see jupyterhub_config.py).

Formgrader reads only the configuration path and the server's working directory (the home),
so this names the course directory, ~/onions, and loads the course's own nbgrader_config.py
from there; the hub's exchange wins over the course's default.
"""
import os

c = get_config()  # noqa: F821 (provided by traitlets)
course = os.path.expanduser(os.environ.get("ONIONS_COURSE", "~/onions"))
c.CourseDirectory.root = course
if os.path.isfile(os.path.join(course, "nbgrader_config.py")):
    load_subconfig("nbgrader_config.py", path=course)  # noqa: F821
c.CourseDirectory.course_id = "onions"
c.Exchange.root = os.environ.get("ONIONS_EXCHANGE", "/srv/nbgrader/exchange")
