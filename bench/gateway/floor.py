"""The floor: the least a Flask app can do under the same gunicorn configuration."""

from flask import Flask

app = Flask(__name__)


@app.route("/", methods=["GET", "POST"])
def hello() -> str:
    return "hello"
