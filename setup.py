"""ament_python package dualdiff_ros; also installs with plain pip (console scripts, data)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dualdiff_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["data/*.tsv", "domains/specs/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob("launch/*.launch.py")),
        ("share/" + PACKAGE + "/config", glob("config/*.yaml")),
        ("share/" + PACKAGE + "/rviz", glob("rviz/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="dualdiff_ros developers",
    maintainer_email="dev@dualdiff.example.com",
    description="Compose a general-prior diffusion model with an on-robot specialized model.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "dualdiff = dualdiff_ros.cli:main",
            "general_prior_node = dualdiff_ros.nodes.general_prior_node:main",
            "specialized_model_node = dualdiff_ros.nodes.specialized_model_node:main",
            "placement_proposal_node = dualdiff_ros.nodes.placement_proposal_node:main",
            "simulator_node = dualdiff_ros.nodes.simulator_node:main",
            "dualdiff_bringup = dualdiff_ros.bringup:main",
        ],
    },
)
