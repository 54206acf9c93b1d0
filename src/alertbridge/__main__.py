from alertbridge.cli import main

main()
