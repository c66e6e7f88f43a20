"""Manual grading in nbgrader's formgrader, for real: the TA's steps of the README.

A Jupyter server with nbgrader's formgrader extension runs on localhost in a copy of the
graded demo class; headless Chromium (through chromedriver and selenium) opens Manual
Grading, gives a written answer points and a comment as a TA would, and the gradebook must
show them.
"""
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from nbgrader.api import Gradebook
from selenium import webdriver
from selenium.common.exceptions import JavascriptException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import course

STUDENT = "demo-reference"
NOTEBOOK = "mnist_exercise"
CELL = "overfitting_written"  # written answer, 2 points
COMMENT = "Right: val_accuracy stays level with accuracy, so no overfitting after two epochs."
# Only localhost resolves: the page's MathJax from a CDN never loads, so the test sees the same
# page online and offline (without MathJax, formgrader's keyboard shortcuts are not set up).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--window-size=1280,1600",
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answers(url: str, server: subprocess.Popen, log: Path, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"jupyter server exited with {server.returncode}: see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"jupyter server did not answer {url.split('?')[0]} within {seconds} s: see {log}")


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium; its last page is kept as tmp_path/last_page.png for a failing run."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.fail("headless Chromium is missing (chromium and chromedriver on PATH): run "
                    "`ONIONS_TEST_TOOLS=1 bash scripts/setup` as root, or: sudo apt-get install chromium "
                    "chromium-driver", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    # An explicit driver path: selenium then never runs Selenium Manager (which downloads drivers).
    driver = webdriver.Chrome(options=options, service=Service(chromedriver, log_output=str(tmp_path / "chromedriver.log")))
    driver.implicitly_wait(10)
    try:
        yield driver
    finally:
        try:
            driver.save_screenshot(str(tmp_path / "last_page.png"))
        finally:
            driver.quit()


@pytest.fixture
def formgrader(demo_class, tmp_path):
    """(course directory, base URL, token) of a Jupyter server on a copy of the demo class; stopped afterwards."""
    directory = shutil.copytree(demo_class[0], tmp_path / "course")
    token, port = secrets.token_hex(16), free_port()
    log = tmp_path / "jupyter-server.log"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    command = [sys.executable, "-m", "jupyter", "server", "--ip=127.0.0.1", f"--port={port}", "--no-browser",
               "--allow-root", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={directory}"]
    with open(log, "w") as output:
        server = subprocess.Popen(command, cwd=directory, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_answers(f"{base}/formgrader/manage_assignments?token={token}", server, log)
        yield directory, base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def gradebook_entry(directory: Path) -> dict:
    """What the gradebook holds for the student and the written answer, read afresh."""
    with Gradebook(f"sqlite:///{directory / 'gradebook.db'}", course.COURSE_ID) as gradebook:
        grade = gradebook.find_grade(CELL, NOTEBOOK, course.ASSIGNMENT, STUDENT)
        comment = gradebook.find_comment(CELL, NOTEBOOK, course.ASSIGNMENT, STUDENT)
        return dict(total=gradebook.find_submission(course.ASSIGNMENT, STUDENT).score,
                    manual_score=grade.manual_score, needs_manual_grade=grade.needs_manual_grade,
                    comment=comment.manual_comment)


def type_and_leave(driver, element_id: str, text: str):
    """Type into a score or comment box, then click the cell's text: formgrader saves a box when it changed
    and lost the focus (its change event)."""
    box = driver.find_element(By.ID, element_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    box.click()
    box.send_keys(text)
    box.find_element(By.XPATH, "ancestor::div[contains(@class, 'nbgrader_cell')]//div[@class='panel-body']").click()
    assert driver.switch_to.active_element != box, f"#{element_id} kept the focus"


def student_row(driver):
    """The student's row in Manual Grading's submission list (names may be hidden)."""
    return driver.find_element(By.XPATH, f"//tr[.//a[contains(@class, 'name-shown') and normalize-space(.)='{STUDENT}']]")


def test_ta_grades_a_written_answer_in_formgrader(browser, formgrader):
    directory, base, token = formgrader
    before = gradebook_entry(directory)
    assert before["needs_manual_grade"] and before["manual_score"] is None and before["comment"] is None, before

    browser.get(f"{base}/formgrader?token={token}")
    browser.find_element(By.LINK_TEXT, "Manual Grading").click()
    browser.find_element(By.LINK_TEXT, course.ASSIGNMENT).click()
    browser.find_element(By.LINK_TEXT, NOTEBOOK).click()
    assert student_row(browser).find_element(By.CSS_SELECTOR, "td.written-score").text == "0 / 5"
    browser.find_element(By.XPATH, "//button[normalize-space(.)='Show All Names']").click()
    browser.find_element(By.LINK_TEXT, STUDENT).click()

    # The page fetches grades and comments after loading; the boxes save only once those are bound.
    WebDriverWait(browser, 20, ignored_exceptions=[JavascriptException]).until(
        lambda driver: driver.execute_script("return formgrader.grades.loaded && formgrader.comments.loaded"),
        "formgrader's grades and comments did not load")
    type_and_leave(browser, CELL, "2")
    type_and_leave(browser, f"{CELL}-comment", COMMENT)

    after = {}
    def saved(_):
        after.update(gradebook_entry(directory))
        return after["manual_score"] == 2 and after["comment"] == COMMENT
    WebDriverWait(browser, 15, poll_frequency=0.3).until(saved, "the score and comment did not reach the gradebook")
    assert after["total"] == before["total"] + 2, (before, after)
    assert not after["needs_manual_grade"]

    # What the TA sees back in the list: the written score counted.
    browser.find_element(By.LINK_TEXT, NOTEBOOK).click()
    assert student_row(browser).find_element(By.CSS_SELECTOR, "td.written-score").text == "2 / 5"
