//! Prints the path of each example guest component, one per line (`scripts/build-components`).

fn main() {
    for path in trellis_guests::ALL {
        println!("{path}");
    }
}
