"""What runs inside the sandbox: the runner, the kernel zygote, the exports of what hidden tests
read, and the checker that runs the hidden tests outside the student's kernel."""
