from costplan.cli import main

main()
