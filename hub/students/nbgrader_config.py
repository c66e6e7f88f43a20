"""nbgrader for the course's students on the hub (their JUPYTER_CONFIG_PATH; see jupyterhub_config.py).

What /etc/jupyter/nbgrader_config.py holds on a server set up by hand (docs/administrators.md, "A shared
server"): the course and its exchange, plus a Validate that tells the truth.
"""
import os

from onions_student.validate import configure_validator

c = get_config()  # noqa: F821 (provided by traitlets)
c.CourseDirectory.course_id = "onions"
c.Exchange.root = os.environ.get("ONIONS_EXCHANGE", "/srv/nbgrader/exchange")
configure_validator(c)
