"""``python -m cifar_lightning fit|validate|test|predict [--config configs/quick.yaml] ...``"""

from cifar_lightning.cli import main

if __name__ == "__main__":
    main()
