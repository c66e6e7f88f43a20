"""The whole term on the course's JupyterHub, in headless Chromium, as real accounts.

`bash scripts/hub` starts the hub on 127.0.0.1 (a free port, a temporary exchange and state),
run by an unprivileged account of the test's own (what onions-hub is on a server), which starts
each server through sudo and sudospawner's mediator; `scripts/hub adduser` makes an instructor
and two students with passwords. The instructor
generates and releases lesson08 in Formgrader; each student logs in, fetches it in the
Assignments tab, answers check_your_learning in the notebook (Alice right, Bob with the
lesson's "biases forgotten" misconception), presses Validate and submits; Bob validates the
untouched notebook first and is told it fails. The instructor collects in Formgrader, grades
with `python -m graders autograde` and `feedback` as their own account (sandboxed), grades a
written answer in Formgrader and releases the feedback there; each student fetches it and
opens their own. mnist_exercise stays unanswered: nothing is trained. The hub and its proxy run
as the hub's account, each server as its own account, sudo lets the hub run the mediator and
nothing else, and JupyterLab never asks about Jupyter news.

A screenshot of every step goes to a folder printed at the start, removed after a passing run
unless ONIONS_KEEP_SCREENSHOTS=1.
Skipped, with the reason, where the machine cannot run it: not root, no Chromium, no Node.js.
"""
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from nbgrader.api import Gradebook
from selenium import webdriver
from selenium.common.exceptions import (ElementClickInterceptedException, ElementNotInteractableException,
                                        JavascriptException, NoSuchElementException, StaleElementReferenceException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

import course
import walk
from graders import data
from graders.outputs.feedback import rendered
from test_exchange import interpreter, shared_python
from test_formgrader import CHROMIUM_FLAGS, free_port, type_and_leave

REPO = Path(__file__).resolve().parent.parent
PREFIX = f"onh{os.getpid() % 100000}"
TEACH, ALICE, BOB = (f"{PREFIX}-{role}" for role in ("teach", "alice", "bob"))
HUB_ACCOUNT = f"{PREFIX}-hub"  # runs the hub (ONIONS_HUB_USER), made by scripts/hub, removed after
CYL, MNIST = "check_your_learning", "mnist_exercise"
WRITTEN = "overfitting_written"
COMMENT = "No answer here: look at val_accuracy next to accuracy, epoch by epoch."
HINT = "Count the biases too: every unit of a Dense layer has one."
# what each student types in place of the stubs of check_your_learning, in order
RIGHT = ["n_parameters = 32 * 32 * 3 * 100 + 100",
         "n_conv_parameters = 100 * 3 * 3 * 3\nratio = n_parameters / n_conv_parameters",
         'x = keras.layers.Conv2D(32, (3, 3), activation="relu")(x)',
         'q3_answer = "fewer"']
# a click that a re-rendered list, an animation or a slow page made miss: tried again
LOST_CLICKS = (StaleElementReferenceException, NoSuchElementException, ElementClickInterceptedException,
               ElementNotInteractableException)
BIASES_FORGOTTEN = ["n_parameters = 32 * 32 * 3 * 100"] + RIGHT[1:]


def cannot_run() -> str:
    if os.geteuid() != 0:
        return "needs root to create the accounts and run the hub"
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "needs headless Chromium: apt-get install chromium chromium-driver"
    if not (shutil.which("node") and shutil.which("npm")):
        return "needs Node.js for the hub's proxy: apt-get install nodejs npm"
    if interpreter() is None:
        return f"other accounts cannot run {os.path.realpath(sys.executable)}, nor a system Python of its version"
    return ""


class Hub:
    def __init__(self, folder: Path, port: int, env: dict, shots: Path):
        self.folder, self.port, self.env, self.shots = folder, port, env, shots
        self.checkout = folder / "onions"  # the hub's own checkout, as /opt/onions on a server
        self.url = f"http://127.0.0.1:{port}"
        self.passwords = {}
        self.process = None
        self.step = 0
        self.news = []  # the steps whose page asked about Jupyter news

    def script(self, *args, stdin: str = None, check=True) -> subprocess.CompletedProcess:
        result = subprocess.run(["bash", str(self.checkout / "scripts" / "hub"), *args], input=stdin, env=self.env,
                                capture_output=True, text=True, timeout=600)
        assert not check or result.returncode == 0, result.stderr[-3000:]
        return result

    def run_as(self, account: str, *command: str, cwd: Path) -> subprocess.CompletedProcess:
        home = pwd.getpwnam(account).pw_dir
        env = ["env", "-i", f"HOME={home}", f"USER={account}", "LANG=C.UTF-8", f"ONIONS_DATA_DIR={self.env['ONIONS_DATA_DIR']}",
               f"PATH={self.env['ONIONS_HUB_VENV']}/bin:/usr/bin:/bin"]
        result = subprocess.run(["runuser", "-u", account, "--", *env, *command], cwd=cwd, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return result

    def home(self, account: str) -> Path:
        return Path(pwd.getpwnam(account).pw_dir)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except Exception:
        return False


def checkout_copy(target: Path) -> None:
    """What a clone of this repository holds (its tracked files), as the hub's own checkout."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    for name in listed.stdout.decode().split("\0"):
        if name and (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, target / name)  # new files: the walk reads what this test made
    shutil.copymode(REPO / "scripts" / "hub", target / "scripts" / "hub")


def pointed_at(venv: Path, checkout: Path) -> Path:
    """The virtualenv's editable install of graders, pointed at `checkout` instead of this repository."""
    for finder in venv.glob("lib/python*/site-packages/__editable___*_finder.py"):
        text = finder.read_text().replace(repr(str(REPO / "graders")), repr(str(checkout / "graders")))
        finder.unlink()  # a hard link: never write through it into the original
        finder.write_text(text)
    return venv


@pytest.fixture(scope="module")
def hub(request):
    failed_before = request.session.testsfailed
    reason = cannot_run()
    if reason:
        pytest.skip(f"the hub test {reason}")
    began = time.time()
    folder = Path(tempfile.mkdtemp(prefix="onions-hub-", dir="/tmp"))
    folder.chmod(0o755)
    checkout_copy(folder / "onions")
    shots = Path(tempfile.mkdtemp(prefix="onions-hub-screenshots-", dir="/tmp"))
    print(f"\nscreenshots: {shots}")
    shutil.copytree(data.cache_dir(), folder / "data")  # what scripts/hub copies to /srv/onions/data
    subprocess.run(["chmod", "-R", "a+rX", str(folder / "data")], check=True)
    port = free_ports()
    env = dict(os.environ, ONIONS_HUB_PORT=str(port), ONIONS_HUB_STATE=str(folder / "state"),
               ONIONS_EXCHANGE=str(folder / "exchange"), ONIONS_DATA_DIR=str(folder / "data"),
               ONIONS_HUB_VENV=str(pointed_at(shared_python(folder, interpreter()), folder / "onions")),
               ONIONS_HUB_USER=HUB_ACCOUNT, ONIONS_STUDENT_ENV=str(folder / "student"))
    made = []
    hub = Hub(folder, port, env, shots)
    hub.began = began
    try:
        for kind, account in (("instructor", TEACH), ("student", ALICE), ("student", BOB)):
            made.append(account)
            hub.passwords[account] = secrets.token_hex(8)
            hub.script("adduser", kind, account, stdin=hub.passwords[account] + "\n")
        log = open(folder / "hub.log", "w")
        start = time.monotonic()
        hub.process = subprocess.Popen(["bash", str(hub.checkout / "scripts" / "hub")], env=env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        while not answers(f"{hub.url}/hub/login"):  # the first start makes the student environment (pip)
            assert hub.process.poll() is None, (folder / "hub.log").read_text()[-3000:]
            assert time.monotonic() - start < 900, "the hub did not answer in 900 s"
            time.sleep(0.5)
        hub.started_in = time.monotonic() - start
        yield hub
    finally:
        if hub.process and hub.process.poll() is None:
            os.killpg(hub.process.pid, signal.SIGTERM)
            try:
                hub.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(hub.process.pid, signal.SIGKILL)
        for account in made:
            subprocess.run(["pkill", "-u", account], capture_output=True)  # only the test's own accounts
            subprocess.run(["userdel", "-r", account], capture_output=True)
        subprocess.run(["pkill", "-u", HUB_ACCOUNT], capture_output=True)
        subprocess.run(["userdel", HUB_ACCOUNT], capture_output=True)  # and its group
        Path("/etc/sudoers.d", HUB_ACCOUNT).unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        if request.session.testsfailed == failed_before and not os.environ.get("ONIONS_KEEP_SCREENSHOTS"):
            shutil.rmtree(shots, ignore_errors=True)  # kept only for a failing run
        else:
            print(f"\nscreenshots of each step kept in {shots}")


def free_ports() -> int:
    """A port N with N+1 and N+2 free too, as scripts/hub needs."""
    port = free_port()
    while not all(free(p) for p in (port + 1, port + 2)):
        port = free_port()
    return port


def free(port: int) -> bool:
    import socket
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def browser(hub):
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver"),
                                                               log_output=str(hub.shots / "chromedriver.log")))
    driver.implicitly_wait(20)
    try:
        yield driver
    finally:
        driver.quit()


def shot(hub, driver, name: str):
    hub.step += 1
    driver.save_screenshot(str(hub.shots / f"{hub.step:02d}-{name}.png"))
    if driver.execute_script("return document.body.innerText.includes('official Jupyter news')"):
        hub.news.append(name)  # JupyterLab's pop-up, which the role folders' page_config.json turns off


def log_in(hub, driver, account: str):
    driver.get(f"{hub.url}/hub/logout")  # the previous account's (its cookies are not all visible from here)
    driver.get(f"{hub.url}/hub/login")
    driver.find_element(By.ID, "username_input").send_keys(account)
    driver.find_element(By.ID, "password_input").send_keys(hub.passwords[account])
    driver.find_element(By.ID, "login_submit").click()
    WebDriverWait(driver, 180).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#jp-main-dock-panel"),
                                     f"{account}'s JupyterLab did not open")
    shot(hub, driver, f"{account}-lab")


def press(driver, by, selector: str, seconds: float = 120):
    """Click the element once it is there, again if a list re-rendered it meanwhile (nbgrader's lists reload)."""
    def clicked(d):
        try:
            d.find_element(by, selector).click()
            return True
        except LOST_CLICKS:
            return False
    driver.implicitly_wait(0)
    try:
        WebDriverWait(driver, seconds, poll_frequency=0.5).until(clicked, f"could not click {selector}")
    finally:
        driver.implicitly_wait(20)


def nbgrader_menu(driver, command: str):
    """Nbgrader -> the command's item (the menu is opened again if a click closed it)."""
    item = f'#jp-mainmenu-nbgrader li[data-command="{command}"]'

    def chosen(d):
        shown = [e for e in d.find_elements(By.CSS_SELECTOR, item) if e.is_displayed()]
        try:
            if shown:
                shown[0].click()
                return True
            d.find_element(By.XPATH, "//div[contains(@class,'lm-MenuBar-itemLabel') and text()='Nbgrader']").click()
        except LOST_CLICKS:
            pass
        return False
    driver.implicitly_wait(0)
    try:
        WebDriverWait(driver, 60, poll_frequency=1).until(chosen, f"could not choose {command} in the Nbgrader menu")
    finally:
        driver.implicitly_wait(20)


def formgrader_row_button(driver, column: str):
    """Click lesson08's button in a column of Formgrader's Manage Assignments; wait for its success dialog."""
    press(driver, By.XPATH, f"//tr[.//a[text()='{course.ASSIGNMENT}']]/td[contains(concat(' ', @class, ' '), ' {column} ')]//a")
    WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#success-modal, #error-modal"))
    assert driver.find_elements(By.CSS_SELECTOR, "#success-modal"), driver.find_element(By.CSS_SELECTOR, "#error-modal").text
    def closed(d):  # a click during the dialog's fade-in is lost: OK again until it is gone
        if not d.find_elements(By.CSS_SELECTOR, ".modal-backdrop"):
            return True
        try:
            d.find_element(By.CSS_SELECTOR, "#success-modal .modal-footer button").click()
        except LOST_CLICKS:
            pass
        return False
    driver.implicitly_wait(0)
    try:
        WebDriverWait(driver, 30, poll_frequency=1).until(closed, "the dialog did not close")
    finally:
        driver.implicitly_wait(20)


def answer_stubs(driver, texts):
    """Replace each '# YOUR CODE HERE / raise NotImplementedError()' stub, in order, by typing, then save."""
    for text in texts:
        line = driver.find_element(By.XPATH, "//div[contains(@class,'cm-line') and normalize-space(.)='# YOUR CODE HERE']")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", line)
        line.click()
        chain = webdriver.ActionChains(driver)
        chain.send_keys(Keys.HOME).key_down(Keys.SHIFT).send_keys(Keys.DOWN).send_keys(Keys.END).key_up(Keys.SHIFT)
        chain.send_keys(text).perform()
    def saved(d):  # Ctrl+S, again if a busy machine let the first one pass unnoticed
        if not d.find_elements(By.CSS_SELECTOR, ".jp-mod-dirty"):
            return True
        webdriver.ActionChains(d).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()
        return False
    driver.implicitly_wait(0)
    try:
        WebDriverWait(driver, 90, poll_frequency=3).until(saved, "the notebook was not saved")
    finally:
        driver.implicitly_wait(20)


def validate(hub, driver, name: str) -> str:
    """Press the notebook's Validate button; the dialog's text."""
    driver.find_element(By.CSS_SELECTOR, "jp-button.validate-button").click()
    dialog = WebDriverWait(driver, 180).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".nbgrader-SuccessDialog, .nbgrader-ErrorDialog"), "no Validate verdict")[0]
    text = dialog.text
    shot(hub, driver, name)
    dialog.find_element(By.CSS_SELECTOR, "button.jp-Dialog-button").click()
    return text


def open_assignments(driver):
    nbgrader_menu(driver, "nbgrader:open-assignment-list")
    press(driver, By.ID, "refresh_assignments_list")


class Term:
    pass


@pytest.fixture(scope="module")
def term(hub, browser):
    """The whole term; what each step showed, for the tests below."""
    seen, driver, started = Term(), browser, time.monotonic()
    try:
        # the instructor generates and releases lesson08 in Formgrader
        log_in(hub, driver, TEACH)
        seen.instructor_menu = menu_commands(hub, driver, TEACH)
        nbgrader_menu(driver, "nbgrader:open-course-list")  # Courses: the instructor's course, from Formgrader
        WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#formgrader_list .list_item"), "no course listed")
        seen.courses = driver.find_element(By.ID, "formgrader_list").text
        shot(hub, driver, "courses")
        driver.get(f"{hub.url}/user/{TEACH}/formgrader/manage_assignments")
        formgrader_row_button(driver, "assign")
        formgrader_row_button(driver, "release")
        shot(hub, driver, "released")

        seen.verdicts = {}
        for student, typed in ((ALICE, RIGHT), (BOB, BIASES_FORGOTTEN)):
            log_in(hub, driver, student)
            seen.__dict__.setdefault("student_menus", {})[student] = menu_commands(hub, driver, student)
            open_assignments(driver)
            press(driver, By.CSS_SELECTOR, "#released_assignments_list > .list_item .item_status button")  # Fetch
            driver.find_element(By.XPATH, f"//div[@id='fetched_assignments_list']//a[text()='{course.ASSIGNMENT}']")
            shot(hub, driver, f"{student}-fetched")
            press(driver, By.XPATH, f"//div[@id='fetched_assignments_list']//a[text()='{course.ASSIGNMENT}']")
            press(driver, By.XPATH, f"//div[@id='fetched_assignments_list']//a[text()='{CYL}']")
            driver.find_element(By.XPATH, "//div[contains(@class,'cm-line') and normalize-space(.)='# YOUR CODE HERE']")
            if student == BOB:
                seen.verdicts["untouched"] = validate(hub, driver, f"{student}-validate-untouched")
            answer_stubs(driver, typed)
            seen.verdicts[student] = validate(hub, driver, f"{student}-validate")
            open_assignments(driver)
            press(driver, By.XPATH, "//div[@id='fetched_assignments_list']//button[text()='Submit']")
            driver.find_element(By.CSS_SELECTOR, f"#nbgrader-onions-{course.ASSIGNMENT}-submissions > .list_item")
            shot(hub, driver, f"{student}-submitted")

        # the instructor collects in Formgrader, grades and writes feedback as themselves
        log_in(hub, driver, TEACH)
        driver.get(f"{hub.url}/user/{TEACH}/formgrader/manage_assignments")
        formgrader_row_button(driver, "collect")
        directory = hub.home(TEACH) / "onions"
        seen.autograde = hub.run_as(TEACH, "python", "-m", "graders", "autograde", course.ASSIGNMENT, "--workers", "2",
                                    "--memory", "3G", cwd=directory).stdout
        # a TA grades a written answer in Formgrader
        driver.get(f"{hub.url}/user/{TEACH}/formgrader")
        driver.find_element(By.LINK_TEXT, "Manual Grading").click()
        driver.find_element(By.LINK_TEXT, course.ASSIGNMENT).click()
        driver.find_element(By.LINK_TEXT, MNIST).click()
        def alice_shown(d):  # the button works once the table's script has run: press until her name shows
            links = [a for a in d.find_elements(By.LINK_TEXT, ALICE) if a.is_displayed()]
            if not links:
                d.find_element(By.XPATH, "//button[normalize-space(.)='Show All Names']").click()
            return links
        WebDriverWait(driver, 60, poll_frequency=1).until(alice_shown, "Show All Names did not show the names")[0].click()
        WebDriverWait(driver, 30, ignored_exceptions=[JavascriptException]).until(
            lambda d: d.execute_script("return formgrader.grades.loaded && formgrader.comments.loaded"))
        type_and_leave(driver, f"{WRITTEN}-comment", COMMENT)
        WebDriverWait(driver, 20, poll_frequency=0.5).until(lambda _: gradebook_comment(directory) == COMMENT)
        shot(hub, driver, "ta-comment")
        seen.feedback = hub.run_as(TEACH, "python", "-m", "graders", "feedback", course.ASSIGNMENT, cwd=directory).stdout
        driver.get(f"{hub.url}/user/{TEACH}/formgrader/manage_assignments")
        formgrader_row_button(driver, "release-feedback")
        shot(hub, driver, "feedback-released")

        # each student fetches and opens their own feedback
        seen.feedback_pages = {}
        for student in (ALICE, BOB):
            log_in(hub, driver, student)
            open_assignments(driver)
            press(driver, By.XPATH, "//div[@id='submitted_assignments_list']//button[text()='Fetch Feedback']")
            press(driver, By.XPATH, "//a[contains(text(), 'view feedback')]")  # the file browser goes to its folder
            item = f"//li[contains(@class,'jp-DirListing-item')][.//span[starts-with(text(), '{CYL}')]]"
            WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.XPATH, item), "no feedback in the file browser")
            webdriver.ActionChains(driver).double_click(driver.find_element(By.XPATH, item)).perform()
            driver.find_element(By.CSS_SELECTOR, ".jp-HTMLViewer iframe")  # JupyterLab shows the page
            time.sleep(2)
            shot(hub, driver, f"{student}-feedback")
            # the same page on its own, as the student's browser loads it: what it says, and whether anything scrolls
            page, = (hub.home(student) / course.ASSIGNMENT / "feedback").glob(f"*/{CYL}.html")
            driver.set_window_size(700, 1400)  # a narrow window, where a hint on one line would scroll
            driver.get(f"{hub.url}/user/{student}/files/{urllib.parse.quote(str(page.relative_to(hub.home(student))))}")
            driver.execute_script("const e = document.querySelector('.output_error'); if (e) e.scrollIntoView({block: 'center'});")
            shot(hub, driver, f"{student}-feedback-page")
            seen.feedback_pages[student] = (driver.find_element(By.TAG_NAME, "body").text,
                                            driver.execute_script(SCROLLING_OUTPUTS),
                                            driver.execute_script(WITHOUT_WRAPPING + SCROLLING_OUTPUTS))
            driver.set_window_size(1280, 1600)
        seen.folders = {student: sorted((hub.home(student) / course.ASSIGNMENT / "feedback").glob("*/*.html"))
                        for student in (ALICE, BOB)}
        seen.directory = directory
        seen.uids = running_as(hub)
    except Exception:
        shot(hub, driver, "failed")
        raise
    seen.seconds = time.monotonic() - started
    print(f"\nthe hub answered in {hub.started_in:.0f} s; the term took {seen.seconds:.0f} s in the browser")
    return seen


SCROLLING_OUTPUTS = ("return Array.from(document.querySelectorAll('.output_text pre'))"
                     ".filter(p => p.scrollWidth > p.clientWidth + 1).length")
WITHOUT_WRAPPING = ("Array.from(document.querySelectorAll('style')).filter(s => s.textContent.includes('graders.feedback'))"
                    ".forEach(s => s.remove());")


def uids(pid) -> set:
    """The real, effective, saved and file-system user ids of a process (/proc/PID/status)."""
    line, = (line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
    return set(map(int, line.split()[1:]))


def running_as(hub) -> dict:
    """Who runs the hub, its proxy, and each single-user server of this hub (its venv's jupyterhub-singleuser)."""
    state = hub.folder / "state"
    found = {"hub": uids((state / "jupyterhub.pid").read_text().strip()),
             "proxy": uids((state / "configurable-http-proxy.pid").read_text().strip()), "servers": []}
    singleuser = {f"{hub.env[venv]}{tail}/bin/jupyterhub-singleuser".encode()
                  for venv, tail in (("ONIONS_HUB_VENV", ""), ("ONIONS_STUDENT_ENV", "/venv"))}
    for process in Path("/proc").iterdir():
        try:
            if process.name.isdigit() and singleuser & set((process / "cmdline").read_bytes().split(b"\0")):
                found["servers"].append(uids(process.name))
                found.setdefault("singleuser", []).append((process / "cmdline").read_bytes().split(b"\0"))
        except (FileNotFoundError, ProcessLookupError):
            pass  # ended meanwhile
    return found


def menu_commands(hub, driver, account: str) -> list:
    """The commands of the Nbgrader menu that the account can use. nbgrader's menu plug-in lists every
    command, and an item whose plug-in is disabled has no command behind it: no label, nothing to click."""
    driver.find_element(By.XPATH, "//div[contains(@class,'lm-MenuBar-itemLabel') and text()='Nbgrader']").click()
    items = driver.find_elements(By.CSS_SELECTOR, "#jp-mainmenu-nbgrader li[data-command]")
    commands = [item.get_attribute("data-command") for item in items
                if item.find_element(By.CSS_SELECTOR, ".lm-Menu-itemLabel").text.strip()]
    shot(hub, driver, f"{account}-menu")
    webdriver.ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    return commands


def gradebook_comment(directory: Path):
    with Gradebook(f"sqlite:///{directory / 'gradebook.db'}", course.COURSE_ID) as gradebook:
        return gradebook.find_comment(WRITTEN, MNIST, course.ASSIGNMENT, ALICE).manual_comment


def test_students_get_no_formgrader_and_the_instructor_does(term):
    for command in ("assignment-list", "course-list", "create-assignment", "formgrader"):
        assert f"nbgrader:open-{command}" in term.instructor_menu, term.instructor_menu
    assert "onions" in term.courses, term.courses
    for student, commands in term.student_menus.items():
        assert "nbgrader:open-assignment-list" in commands, (student, commands)
        assert not {"nbgrader:open-formgrader", "nbgrader:open-course-list", "nbgrader:open-create-assignment"} & set(commands), (student, commands)


def test_validate_tells_each_student_the_truth(term):
    assert "failed" in term.verdicts["untouched"].lower(), term.verdicts["untouched"]
    for student in (ALICE, BOB):  # Bob's mistake is for the hidden tests: the public ones pass
        assert "Success! Your notebook passes all the tests" in term.verdicts[student], term.verdicts[student]


def test_the_batch_grader_grades_what_was_collected(term):
    lines = {line.split()[0]: line.split() for line in term.autograde.splitlines() if line.startswith(PREFIX)}
    assert lines[ALICE][1:4] == ["5", "19", "graded"], term.autograde
    assert lines[BOB][1:4] == ["4", "19", "graded"], term.autograde


def test_each_student_reads_their_own_feedback_with_the_hint_and_no_hidden_test(term):
    alice, bob = term.feedback_pages[ALICE][0], term.feedback_pages[BOB][0]
    assert "32 * 32 * 3 * 100 + 100" in alice and HINT not in alice
    assert HINT in bob and "32 * 32 * 3 * 100 + 100" not in bob
    for text in (alice, bob):
        assert "HIDDEN TESTS" not in text and "MISCONCEPTIONS" not in text
    assert all(len(files) == 2 for files in term.folders.values()), term.folders
    scrolling, scrolling_unwrapped = term.feedback_pages[BOB][1:]
    assert scrolling == 0 and scrolling_unwrapped > 0, (scrolling, scrolling_unwrapped)  # the hint wraps, thanks to the style
    mnist = next(path for path in term.folders[ALICE] if path.stem == MNIST)
    assert COMMENT in rendered(mnist.read_text())


WATCH_WINDOW = 60  # on-submit grading here: one graded hand-in per student per minute


def fetched_pages(hub, student) -> dict:
    """{feedback folder: its check_your_learning page's text} of what the student has fetched so far."""
    return {page.parent: rendered(page.read_text()) for page in (hub.home(student) / course.ASSIGNMENT / "feedback").glob(f"*/{CYL}.html")}


@pytest.fixture(scope="module")
def on_submit(hub, browser, term):
    """After the term: the instructor starts `python -m graders watch`; with no instructor action, Alice hands
    in again in the browser and fetches her feedback, then Bob three times: graded, over the limit, graded
    after the window. {round: (student, the page's text, seconds from Submit to fetched, its score)}."""
    driver, seen = browser, Term()
    directory = term.directory
    with open(directory / "nbgrader_config.py", "a") as config:
        config.write(f"\nc.GradersWatch.per_period = 1\nc.GradersWatch.period = {WATCH_WINDOW}\nc.GradersWatch.interval = 2\n")
    env = ["env", "-i", f"HOME={hub.home(TEACH)}", f"USER={TEACH}", "LANG=C.UTF-8", f"ONIONS_DATA_DIR={hub.env['ONIONS_DATA_DIR']}",
           f"PATH={hub.env['ONIONS_HUB_VENV']}/bin:/usr/bin:/bin"]
    log = hub.folder / "watch.log"
    with open(log, "w") as output:
        watcher = subprocess.Popen(["runuser", "-u", TEACH, "--", *env, "python", "-m", "graders", "watch", course.ASSIGNMENT],
                                   cwd=directory, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    seen.rounds, graded_at = {}, None
    try:
        for student, round in ((ALICE, "alice graded"), (BOB, "graded"), (BOB, "not graded now"), (BOB, "graded after the window")):
            if round in ("alice graded", "graded"):
                log_in(hub, driver, student)
            if round == "graded after the window":
                time.sleep(max(0.0, graded_at + WATCH_WINDOW + 10 - time.monotonic()))  # nbgrader's timestamp: a moment later
            before = fetched_pages(hub, student)
            open_assignments(driver)
            press(driver, By.XPATH, "//div[@id='fetched_assignments_list']//button[text()='Submit']")
            submitted = time.monotonic()
            graded_at = graded_at if round == "not graded now" else submitted

            def fetched(d):  # Fetch Feedback, until the page of this hand-in is there
                press(d, By.XPATH, "//div[@id='submitted_assignments_list']//button[text()='Fetch Feedback']")
                time.sleep(3)
                return set(fetched_pages(hub, student)) - set(before)
            new, = WebDriverWait(driver, 300, poll_frequency=2).until(fetched, f"no feedback for {student}'s hand-in ({round})")
            shot(hub, driver, f"on-submit-{round.replace(' ', '-')}")
            cells = course.grades(directory)[student]
            score = sum(grade[0] for (notebook, _), grade in cells.items() if notebook == CYL)
            seen.rounds[round] = (student, fetched_pages(hub, student)[new], time.monotonic() - submitted, score)
    except Exception:
        shot(hub, driver, "on-submit-failed")
        raise
    finally:
        os.killpg(watcher.pid, signal.SIGTERM)
        watcher.wait(timeout=60)
        seen.log = log.read_text()
    print("\non submit, feedback fetchable after: " + ", ".join(f"{r} {s:.0f} s" for r, (_, _, s, _) in seen.rounds.items()))
    return seen


def test_a_hand_in_gets_preliminary_feedback_with_its_score_and_hint_and_none_over_the_limit(on_submit):
    rounds = on_submit.rounds
    for round in ("alice graded", "graded", "graded after the window"):
        student, page, _, score = rounds[round]
        assert "Preliminary feedback" in page and f"{CYL} (Score: {score:.1f} / " in page, (round, page[:2000])
        assert "HIDDEN TESTS" not in page and "MISCONCEPTIONS" not in page
        assert (HINT in page) == (student == BOB), round  # Alice's answer is right: no hint for her
    assert rounds["alice graded"][3] > rounds["graded"][3]
    deferred = rounds["not graded now"][1]
    assert "not graded now" in deferred and "HIDDEN TESTS" not in deferred and "(Score: " not in deferred, deferred
    assert f"{BOB}: 4 of 19, graded" in on_submit.log and f"{BOB}: not graded now" in on_submit.log, on_submit.log
    assert f"{ALICE}: " in on_submit.log and f"{ALICE}: not graded now" not in on_submit.log, on_submit.log


def test_a_second_start_finds_the_first_and_a_port_in_use_is_named(hub, term):
    second = hub.script(check=False)
    assert second.returncode == 1 and second.stderr.strip().splitlines()[-1].startswith(
        "scripts/hub: the hub is already running (pid"), second.stderr
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = dict(hub.env, ONIONS_HUB_PORT=str(port), ONIONS_HUB_STATE=str(hub.folder / "other"))
        result = subprocess.run(["bash", str(REPO / "scripts" / "hub")], env=other, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.strip() == (
        f"scripts/hub: port {port} on 127.0.0.1 is in use by another program: choose other ports "
        "with ONIONS_HUB_PORT=N (N, N+1 and N+2 are used)"), result.stderr


def test_the_hub_runs_as_its_own_account_and_each_server_as_its_owner(hub, term):
    hub_uid = pwd.getpwnam(HUB_ACCOUNT).pw_uid
    assert term.uids["hub"] == {hub_uid} and term.uids["proxy"] == {hub_uid}, (hub_uid, term.uids)
    assert all(len(ids) == 1 for ids in term.uids["servers"]), term.uids["servers"]
    owners = sorted(pwd.getpwuid(next(iter(ids))).pw_name for ids in term.uids["servers"])
    assert owners == sorted([TEACH, ALICE, BOB]), owners
    state = hub.folder / "state"  # the hub's own, where root runs nothing (npm ci of the proxy too is the hub's)
    made_by = {path.owner() for path in state.rglob("*")} | {state.owner()}
    assert made_by == {HUB_ACCOUNT}, made_by


def test_sudo_lets_the_hub_run_the_mediator_as_course_accounts_and_nothing_else(hub, term):
    mediator = [f"{hub.env['ONIONS_STUDENT_ENV']}/venv/bin/sudospawner", "--logging=INFO"]  # the students'
    instructors = [f"{hub.env['ONIONS_HUB_VENV']}/bin/sudospawner", "--logging=INFO"]
    probe = '{"action": "kill", "pid": 1, "signal": 0}'  # as Alice: "is pid 1 alive?", which she may not signal

    def sudo(account, *command):
        return subprocess.run(["runuser", "-u", HUB_ACCOUNT, "--", "sudo", "-n", "-u", account, *command],
                              input=probe, capture_output=True, text=True, timeout=60)
    allowed = sudo(ALICE, *mediator)
    assert allowed.returncode == 0 and '"ok": true' in allowed.stdout, allowed.stdout + allowed.stderr
    for account, command in ((ALICE, ["/bin/true"]), ("root", mediator), (ALICE, [mediator[0], "--logging=DEBUG"]),
                             (ALICE, ["/usr/bin/env", *mediator]), (ALICE, instructors), ("root", instructors)):
        refused = sudo(account, *command)
        assert refused.returncode == 1 and "password is required" in refused.stderr, (account, command, refused.stderr)


def test_jupyterlab_never_asks_about_jupyter_news(term, hub):
    assert hub.step > 20 and not hub.news, hub.news


def test_root_is_asked_for_and_a_checkout_the_hub_cannot_reach_is_named(hub):
    copies = {"open": 0o755, "closed": 0o700}  # a checkout under /root: a folder above it is closed
    for name, mode in copies.items():
        (hub.folder / name).mkdir(mode=mode)
        for part in ("scripts", "hub"):
            shutil.copytree(REPO / part, hub.folder / name / "onions" / part)
    script = hub.folder / "open" / "onions" / "scripts" / "hub"
    as_nobody = subprocess.run(["runuser", "-u", "nobody", "--", "bash", str(script)], env=hub.env,
                               capture_output=True, text=True, timeout=60)
    assert as_nobody.returncode == 1 and as_nobody.stderr.strip() == (
        "scripts/hub: the one-time set-up (the hub's account, sudo, the groups, the exchange) needs root: sudo bash "
        f"scripts/hub (the hub itself then runs as {HUB_ACCOUNT}; docs/hub.md)"), as_nobody.stderr
    other = dict(hub.env, ONIONS_HUB_PORT=str(free_ports()), ONIONS_HUB_STATE=str(hub.folder / "closed-state"))
    closed = subprocess.run(["bash", str(hub.folder / "closed" / "onions" / "scripts" / "hub")], env=other,
                            capture_output=True, text=True, timeout=60)
    assert closed.returncode == 1 and closed.stderr.strip().splitlines()[-1] == (
        f"scripts/hub: {HUB_ACCOUNT} cannot read {hub.folder / 'closed' / 'onions'}/hub (the hub's configuration): put "
        "the checkout where the instructors' group can reach it, e.g. /opt/onions, not under /root"), closed.stderr


def test_a_student_reads_no_answer_anywhere_and_the_instructor_does(hub, term):
    """Issue 31's walk: every file made or changed since the test began (the hub's checkout, its data, the
    student environment, the homes, the exchange), as Alice and as the instructor."""
    started = time.monotonic()
    # left out: the machine's other copies of the course, and the other sessions' scratch folders in /tmp
    skip = [*walk.course_copies([hub.folder, *(hub.home(a) for a in (TEACH, ALICE, BOB))]), "/work",
            *(str(path) for path in Path("/tmp").iterdir() if path != hub.folder)]
    own = {line.strip() for text in RIGHT + BIASES_FORGOTTEN for line in text.splitlines()}
    found = walk.secret_files(skip, since=hub.began, own=own)
    as_alice, as_teacher = walk.readable_by(ALICE, found), walk.readable_by(TEACH, found)
    print(f"\nthe walk ({time.monotonic() - started:.0f} s): {len(found)} files hold a secret; readable by a student: "
          f"{len(as_alice)} ({walk.summary(found, as_alice)}); by the instructor: {len(as_teacher)} "
          f"({walk.summary(found, as_teacher)})\n" + "\n".join(f"  {found[p]}: {p}" for p in sorted(found)))
    assert as_alice == [], as_alice
    kinds = {found[path] for path in as_teacher}
    assert kinds == {"solution or hidden-test line", "grading labels", "gradebook", "full dataset"}, kinds
    assert any(path.startswith(str(hub.checkout / "source")) for path in as_teacher)
    assert any(path.startswith(str(hub.home(TEACH) / "onions")) for path in as_teacher)


def test_students_servers_run_from_the_student_environment(hub, term):
    """The student environment holds the student side (onions_student) and no graders; the servers use it."""
    python = str(Path(hub.env["ONIONS_STUDENT_ENV"]) / "venv" / "bin" / "python")
    probe = hub.run_as(ALICE, python, "-c", "import importlib.util as u; print(u.find_spec('onions_student') is not None, "
                       "u.find_spec('graders') is not None)", cwd=Path("/"))
    assert probe.stdout.split() == ["True", "False"], probe.stdout
    students = [line for line in term.uids["singleuser"] if any(b"/student/venv/" in part for part in line)]
    assert len(students) == 2, term.uids["singleuser"]
