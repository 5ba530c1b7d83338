from gan_ssl.cli import main

main()
