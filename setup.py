"""Thin shim: build_ext runs CMake (CMakeLists.txt holds every compiler flag).

Install with torch already present and without build isolation, so the extension is built
against the torch that will import it:  pip install --no-build-isolation -e .
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
VERSION = re.search(r'__version__ = "([^"]+)"',
                    (ROOT / "lsswgan_core" / "_version.py").read_text()).group(1)


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        # One build tree per environment: a CPU and a CUDA venv must not share a CMake cache.
        env_name = Path(sys.prefix).name.lstrip(".") or "env"
        build_dir = ROOT / "build" / f"cmake-{env_name}-{sys.implementation.cache_tag}"
        build_dir.mkdir(parents=True, exist_ok=True)
        # The environment's own cmake (pip installs one) is preferred over the system's.
        local = Path(sys.executable).parent / "cmake"
        cmake = str(local) if local.exists() else shutil.which("cmake")
        if cmake is None:
            raise RuntimeError("cmake not found: pip install cmake (make build does)")
        args = [
            cmake, "-S", str(ROOT), "-B", str(build_dir),
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DLSS_OUTPUT_DIR={out_dir}",
            f"-DLSS_VERSION={VERSION}",
            f"-DLSS_WITH_CUDA={os.environ.get('LSS_WITH_CUDA', 'AUTO')}",
            f"-DCMAKE_BUILD_TYPE={os.environ.get('LSS_BUILD_TYPE', 'Release')}",
        ]
        cuda_home = os.environ.get("CUDA_HOME")
        if cuda_home:
            args.append(f"-DCMAKE_CUDA_COMPILER={cuda_home}/bin/nvcc")
        try:
            import ninja  # noqa: F401

            if not (build_dir / "CMakeCache.txt").exists():
                args += ["-G", "Ninja"]
        except ImportError:
            pass
        subprocess.run(args, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.run([cmake, "--build", str(build_dir), "-j", jobs], check=True)


setup(
    name="lsscore",
    version=VERSION,
    description="Summary-driven 3D WGAN-GP emulators of the cosmic web, with fast statistics kernels",
    python_requires=">=3.10",
    packages=find_packages(include=["lsswgan_core", "lsswgan_core.*"]) + ["lsscore"],
    package_dir={"lsscore": "cli"},
    ext_modules=[CMakeExtension("lsswgan_core._C")],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=["torch", "numpy", "h5py", "click"],
    extras_require={"plots": ["matplotlib"], "test": ["pytest", "hypothesis", "scipy"]},
    entry_points={"console_scripts": ["lsscore = lsscore.main:main"]},
    zip_safe=False,
)
