using System.Runtime.InteropServices;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Runtime;

/// <summary>A named tensor in managed memory: a model input to feed or an output that came back.
/// Bytes are little-endian in ONNX's raw layout (bool = one byte per element).</summary>
public sealed class TensorData
{
    public TensorData(string name, ArrayTensor tensor)
    {
        Name = name;
        Tensor = tensor;
    }

    public TensorData(string name, TensorDataType elementType, long[] dims, byte[] data)
        : this(name, new ArrayTensor(elementType, dims, data)) { }

    public string Name { get; }

    /// <summary>The data as a model-layer tensor (typed views, float and integer conversions).</summary>
    public ArrayTensor Tensor { get; }

    public TensorDataType ElementType => Tensor.DataType;
    public IReadOnlyList<long> Dims => Tensor.Dims;
    public long ElementCount => Tensor.ElementCount;
    public ReadOnlySpan<byte> Bytes => Tensor.Bytes;

    public ReadOnlySpan<T> AsSpan<T>() where T : unmanaged => Tensor.AsSpan<T>();

    /// <summary>Floating-point data (float32, float16, bfloat16, double) as float32; float16 and
    /// bfloat16 widen exactly.</summary>
    public float[] ToSingleArray() => Tensor.ToSingleArray();

    /// <summary>Integer or bool data as int64.</summary>
    public long[] ToInt64Array() => Tensor.ToInt64Array();

    /// <summary>Every element as a double (exact for all types up to 32 bits, int64 rounds above 2^53).</summary>
    public double[] ToDoubleArray()
    {
        if (ElementType == TensorDataType.Double) return AsSpan<double>().ToArray();
        if (ElementType.IsFloatingPoint()) return Array.ConvertAll(ToSingleArray(), v => (double)v);
        if (ElementType == TensorDataType.UInt64) return Array.ConvertAll(AsSpan<ulong>().ToArray(), v => (double)v);
        return Array.ConvertAll(ToInt64Array(), v => (double)v);
    }

    public static TensorData Create<T>(string name, ReadOnlySpan<T> values, params long[] dims) where T : unmanaged
    {
        if (typeof(T) == typeof(bool))
        {
            // bool is one byte in both .NET and ONNX, but normalize to 0/1.
            var bytes = MemoryMarshal.AsBytes(values).ToArray();
            for (int i = 0; i < bytes.Length; i++) bytes[i] = bytes[i] != 0 ? (byte)1 : (byte)0;
            return new TensorData(name, TensorDataType.Bool, dims, bytes);
        }
        return new TensorData(name, ArrayTensor.Create(values, dims));
    }

    public static TensorData Create<T>(string name, T[] values, params long[] dims) where T : unmanaged =>
        Create(name, (ReadOnlySpan<T>)values, dims);

    public TensorData WithName(string name) => new(name, Tensor);

    public override string ToString() => $"{Name}: {ElementType.OnnxName()}[{string.Join(",", Dims)}]";
}
