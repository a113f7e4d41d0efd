"""Print the built-in tiny random checkpoint's directory, making it first if needed."""

from bark_core.checkpoint import demo_checkpoint_dir

if __name__ == "__main__":
    print(demo_checkpoint_dir())
