"""tf_offline_q: transformer Q-functions trained offline (CQL + C51) in TensorFlow.

The stack is pinned: pip otherwise upgrades TensorFlow or numpy silently and
Reverb (built against TF 2.15) breaks. `constraints.txt` is the full freeze the
stack was verified with; `make setup` installs with it.
"""
import setuptools

INSTALL_REQUIRES = [
    "tensorflow==2.15.1",
    "tf-keras==2.15.1",
    "tf-agents==0.19.0",
    "dm-reverb==0.14.0",
    "tensorflow-probability==0.23.0",
    "tensorflow-datasets==4.9.4",
    "tensorflow-metadata==1.14.0",
    "tensorboard==2.15.2",
    "protobuf>=3.20,<4.26",
    "numpy>=1.26,<2",
    "gymnasium==1.3.0",
    "ale-py==0.12.1",
    "opencv-python-headless>=4.8,<4.11",
    "gin-config==0.5.0",
    "absl-py>=1.4",
    "rliable==1.2.0",
    "pandas==2.2.3",
    "scipy==1.13.1",
    "arch==7.0.0",
    "matplotlib==3.9.4",
    # MinAtar (Young & Tian, 2019): the small games bench/learning.py learns on 2 cores.
    "MinAtar==1.0.15",
    "seaborn==0.13.2",
]

setuptools.setup(
    name="tf_offline_q",
    version="0.1.0",
    description="Offline Q-learning with vision transformers (CQL + C51) on TF-Agents and Reverb.",
    packages=setuptools.find_packages(include=["tf_offline_q", "tf_offline_q.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest==8.3.5", "pytest-xdist==3.6.1"]},
)
