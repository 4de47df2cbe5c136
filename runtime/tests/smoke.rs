use dynlab_runtime::{Device, Tensor};
#[test]
fn smoke() {
    dynlab_runtime::set_poison_outputs(true);
    let d = Device::default().unwrap();
    println!("{}", d.name());
    let a = Tensor::from_vec(vec![1.0f32, -2.0, 3.0, 4.0, 5.0], &[5], &d).unwrap();
    println!("{:?}", a.exp().unwrap().to_vec::<f32>().unwrap());
    println!("{:?}", a.relu().unwrap().to_vec::<f32>().unwrap());
    let b = Tensor::from_vec(vec![1.0f32, 2.0], &[2, 1], &d).unwrap();
    println!("{:?}", a.add(&b).unwrap().to_vec::<f32>().unwrap());
    println!("{:?}", a.reshape(&[5,1]).unwrap().transpose(0,1).unwrap().contiguous().unwrap().to_vec::<f32>().unwrap());
}
