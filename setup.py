"""tf_offline_q: transformer Q-functions trained offline (CQL + C51) in TensorFlow.

The stack is pinned: pip otherwise upgrades TensorFlow or numpy silently and
Reverb (built against TF 2.15) breaks. `constraints.txt` is the full freeze the
stack was verified with; `make setup` installs with it.
"""
import setuptools

INSTALL_REQUIRES = [
    # The CPU build of TensorFlow 2.15.1: the default `tensorflow` wheel prints three CUDA-factory
    # registration errors at every import on a machine without a GPU. For a GPU, install
    # `tensorflow[and-cuda]==2.15.1` in place of it (README, "Installation").
    "tensorflow-cpu==2.15.1",
    "tf-agents==0.19.0",
    "dm-reverb==0.14.0",
    "tensorflow-probability==0.23.0",
    "tensorflow-datasets==4.9.4",
    "tensorflow-metadata==1.14.0",
    "tensorboard==2.15.2",
    "protobuf>=3.20,<4.26",
    "numpy>=1.26,<2",
    "gymnasium==1.3.0",
    # TF-Agents imports gym 0.23 (we use gymnasium); gym-notices 0.0.8 has no
    # "unmaintained" notice for it, so no banner is printed at every import.
    "gym-notices==0.0.8",
    # gymnasium-robotics 1.4.2 prints, at every import, a notice about AdroitHand reward changes
    # (environments we do not use) taken from farama-notifications 0.0.6; 0.0.4 has no notices.
    "farama-notifications==0.0.4",
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
    # Continuous control (Q-Transformer, QT): MuJoCo locomotion, Gymnasium-Robotics mazes and Fetch,
    # Minari datasets (0.5.4+ needs numpy 2).
    "mujoco==3.3.7",
    "gymnasium-robotics==1.4.2",
    "minari==0.5.3",
    "h5py>=3.8",
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
