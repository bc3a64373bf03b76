using System.Runtime.InteropServices;

namespace OnnxOutlierTools.Tensors;

/// <summary>A tensor that owns its bytes in managed memory: new tensors and edited copies.</summary>
public sealed class ArrayTensor : Tensor
{
    private readonly byte[] _data;

    public ArrayTensor(TensorDataType dataType, long[] dims, byte[] data) : base(dataType, dims)
    {
        if (dataType == TensorDataType.String) throw new NotSupportedException("STRING tensors are not stored as raw bytes.");
        if (data.LongLength != ByteLength)
            throw new TensorFormatException($"{dataType.OnnxName()}[{string.Join(",", dims)}] needs {ByteLength} bytes, got {data.LongLength}");
        _data = data;
    }

    public static ArrayTensor Create<T>(ReadOnlySpan<T> values, params long[] dims) where T : unmanaged
    {
        var type = ElementTypes.For<T>();
        var bytes = MemoryMarshal.AsBytes(values).ToArray();
        return new ArrayTensor(type, dims, bytes);
    }

    public static ArrayTensor Zeros(TensorDataType dataType, params long[] dims)
    {
        long count = dims.Aggregate(1L, (a, d) => checked(a * d));
        return new ArrayTensor(dataType, dims, new byte[dataType.ByteLength(count)]);
    }

    public override TensorStorage Storage => TensorStorage.Memory;

    /// <summary>The owned bytes, for in-place edits.</summary>
    public Span<byte> WritableBytes => _data;

    public Span<T> AsWritableSpan<T>() where T : unmanaged
    {
        ElementTypes.Check<T>(DataType);
        return MemoryMarshal.Cast<byte, T>(_data.AsSpan());
    }

    public override ReadOnlySpan<byte> GetBytes(long offset, int length) => _data.AsSpan(checked((int)offset), length);
}

/// <summary>A tensor whose bytes are computed chunk by chunk when read: huge synthetic weights
/// (benchmarks, the &gt;2 GB save path) without holding them in memory.</summary>
public sealed class GeneratedTensor : Tensor
{
    public delegate void Fill(long byteOffset, Span<byte> destination);

    private readonly Fill _fill;

    public GeneratedTensor(TensorDataType dataType, long[] dims, Fill fill) : base(dataType, dims) => _fill = fill;

    public override TensorStorage Storage => TensorStorage.Memory;

    public override ReadOnlySpan<byte> GetBytes(long offset, int length)
    {
        if (offset < 0 || offset + length > ByteLength) throw new ArgumentOutOfRangeException(nameof(offset));
        var chunk = new byte[length];
        _fill(offset, chunk);
        return chunk;
    }

    protected override void Read(long offset, Span<byte> destination) => _fill(offset, destination);
}
