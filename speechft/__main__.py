from speechft.cli.app import main

main()
