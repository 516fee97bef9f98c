from toolkit.gradcam.cli import main

main()
