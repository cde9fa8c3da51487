from pinn.cli import main

main()
