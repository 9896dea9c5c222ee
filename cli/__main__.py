"""`python -m lsscore ...` (what torchrun runs: `torchrun --nproc-per-node 2 -m lsscore train ...`)."""
from .main import main

main()
