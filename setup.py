"""Packaging for facelabel: what `pip install .` and Dataflow workers (`--setup_file ./setup.py`) install.

Dependency versions come from requirements.txt, the one place they are pinned.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def requirements(filename: str) -> list[str]:
    lines = (HERE / filename).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


setup(
    name="facelabel",
    version="0.1.0",
    description="Label face images as happy or sad with a TensorFlow model in an Apache Beam pipeline",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["model", "model.*", "pipeline", "pipeline.*", "trainer", "trainer.*",
                                    "app", "app.*"]),
    package_data={"model": ["default/*", "default/variables/*", "default/assets/*"], "app": ["templates/*"]},
    install_requires=requirements("requirements.txt"),
    extras_require={"test": requirements("requirements-test.txt")},
)
