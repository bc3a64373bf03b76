using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Onnx.Protobuf;

namespace OnnxOutlierTools.Tensors;

/// <summary>Where a tensor's bytes live now.</summary>
public enum TensorStorage
{
    /// <summary>Inside the loaded protobuf (raw_data or typed fields).</summary>
    Embedded,
    /// <summary>In an external data file, memory-mapped and read on first touch.</summary>
    External,
    /// <summary>In managed memory, or computed on demand (a new or edited tensor).</summary>
    Memory,
}

/// <summary>
/// A tensor value behind one interface with lazy implementations: a no-copy view of a protobuf tensor,
/// a memory-mapped external-data tensor, an in-memory array, or a generator. Shape and data type are
/// known without reading any data. Bytes are little-endian in ONNX's raw_data layout (sub-byte types packed).
/// Spans returned by an embedded or external tensor stay valid while the owning model is alive.
/// </summary>
public abstract class Tensor
{
    protected Tensor(TensorDataType dataType, IReadOnlyList<long> dims)
    {
        DataType = dataType;
        Dims = dims;
        long count = 1;
        foreach (long d in dims)
        {
            if (d < 0) throw new TensorFormatException($"negative dimension {d} in shape [{string.Join(",", dims)}]");
            if (count != 0 && d > long.MaxValue / count)
                throw new TensorFormatException($"shape [{string.Join(",", dims)}] has more than {long.MaxValue} elements");
            count *= d;
        }
        // Checked here once so that ByteLength cannot overflow later.
        int bits = dataType.BitsPerElement();
        if (bits > 0 && count > (long.MaxValue - 7) / bits)
            throw new TensorFormatException($"{dataType.OnnxName()}[{string.Join(",", dims)}] is larger than {long.MaxValue} bytes");
        ElementCount = count;
    }

    public TensorDataType DataType { get; }
    public IReadOnlyList<long> Dims { get; }
    public long ElementCount { get; }
    public abstract TensorStorage Storage { get; }

    /// <summary>The protobuf this tensor was read from (doc_string, metadata_props and the original data
    /// representation survive a save through it); null for a tensor made in memory.</summary>
    public virtual TensorProto? Source => null;

    /// <summary>Byte size of the data (0 for STRING tensors, whose data has no fixed layout).</summary>
    public long ByteLength => DataType == TensorDataType.String ? 0 : DataType.ByteLength(ElementCount);

    /// <summary>A slice of the data. <paramref name="length"/> is an int because spans are; read larger
    /// tensors in chunks or through <see cref="CopyTo(Stream)"/>.</summary>
    public abstract ReadOnlySpan<byte> GetBytes(long offset, int length);

    /// <summary>All bytes of a tensor below 2 GiB.</summary>
    public ReadOnlySpan<byte> Bytes
    {
        get
        {
            if (ByteLength > Array.MaxLength)
                throw new NotSupportedException($"Tensor of {ByteLength} bytes is too large for one span; use CopyTo or GetBytes in chunks.");
            return GetBytes(0, (int)ByteLength);
        }
    }

    /// <summary>Writes all data to <paramref name="destination"/> in chunks (works above 2 GiB).</summary>
    public virtual void CopyTo(Stream destination)
    {
        const int chunk = 64 << 20;
        long total = ByteLength;
        for (long offset = 0; offset < total; offset += chunk)
            destination.Write(GetBytes(offset, (int)Math.Min(chunk, total - offset)));
    }

    /// <summary>The data as elements of <typeparamref name="T"/>, which must match the data type
    /// (float, Half, BFloat16, sbyte, byte, short, ushort, int, uint, long, ulong, double, bool).</summary>
    public ReadOnlySpan<T> AsSpan<T>() where T : unmanaged
    {
        ElementTypes.Check<T>(DataType);
        return MemoryMarshal.Cast<byte, T>(Bytes);
    }

    /// <summary>Converts a floating-point tensor (float32/16, bfloat16, double) to a new float32 array.</summary>
    public float[] ToSingleArray()
    {
        var result = new float[checked((int)ElementCount)];
        switch (DataType)
        {
            case TensorDataType.Float: AsSpan<float>().CopyTo(result); break;
            case TensorDataType.Float16: FloatConversion.ToSingle(AsSpan<Half>(), result); break;
            case TensorDataType.BFloat16: FloatConversion.ToSingle(AsSpan<BFloat16>(), result); break;
            case TensorDataType.Double:
                var d = AsSpan<double>();
                for (int i = 0; i < d.Length; i++) result[i] = (float)d[i];
                break;
            default: throw new NotSupportedException($"Cannot convert {DataType.OnnxName()} to float.");
        }
        return result;
    }

    /// <summary>Integer tensors (int8..int64, uint8..uint32) as a new long array.</summary>
    public long[] ToInt64Array()
    {
        var result = new long[checked((int)ElementCount)];
        switch (DataType)
        {
            case TensorDataType.Int64: AsSpan<long>().CopyTo(result); break;
            case TensorDataType.Int32: Widen(AsSpan<int>(), result); break;
            case TensorDataType.Int16: Widen(AsSpan<short>(), result); break;
            case TensorDataType.Int8: Widen(AsSpan<sbyte>(), result); break;
            case TensorDataType.UInt8: Widen(AsSpan<byte>(), result); break;
            case TensorDataType.UInt16: Widen(AsSpan<ushort>(), result); break;
            case TensorDataType.UInt32: Widen(AsSpan<uint>(), result); break;
            case TensorDataType.Bool: Widen(AsSpan<byte>(), result); break;
            default: throw new NotSupportedException($"Cannot convert {DataType.OnnxName()} to int64.");
        }
        return result;

        static void Widen<T>(ReadOnlySpan<T> source, long[] destination) where T : unmanaged, System.Numerics.IBinaryInteger<T>
        {
            for (int i = 0; i < source.Length; i++) destination[i] = long.CreateTruncating(source[i]);
        }
    }

    /// <summary>A writable in-memory copy (copy-on-write edits start here).</summary>
    public ArrayTensor ToArrayTensor()
    {
        var data = new byte[checked((int)ByteLength)];
        Bytes.CopyTo(data);
        return new ArrayTensor(DataType, Dims.ToArray(), data);
    }

    public override string ToString() => $"{DataType.OnnxName()}[{string.Join(",", Dims)}] ({Storage})";
}

/// <summary>Maps element CLR types to ONNX data types for typed span access.</summary>
public static class ElementTypes
{
    public static void Check<T>(TensorDataType dataType) where T : unmanaged
    {
        if (!Matches<T>(dataType))
            throw new InvalidOperationException($"Tensor of {dataType.OnnxName()} cannot be viewed as {typeof(T).Name}.");
    }

    public static bool Matches<T>(TensorDataType dataType) where T : unmanaged => dataType switch
    {
        TensorDataType.Float => typeof(T) == typeof(float),
        TensorDataType.Float16 => typeof(T) == typeof(Half),
        TensorDataType.BFloat16 => typeof(T) == typeof(BFloat16),
        TensorDataType.Double => typeof(T) == typeof(double),
        TensorDataType.Int8 => typeof(T) == typeof(sbyte),
        TensorDataType.UInt8 => typeof(T) == typeof(byte),
        TensorDataType.Int16 => typeof(T) == typeof(short),
        TensorDataType.UInt16 => typeof(T) == typeof(ushort),
        TensorDataType.Int32 => typeof(T) == typeof(int),
        TensorDataType.UInt32 => typeof(T) == typeof(uint),
        TensorDataType.Int64 => typeof(T) == typeof(long),
        TensorDataType.UInt64 => typeof(T) == typeof(ulong),
        TensorDataType.Bool => typeof(T) == typeof(bool) || typeof(T) == typeof(byte),
        // Packed 4-bit and 8-bit float formats are exposed as their raw bytes.
        TensorDataType.Int4 or TensorDataType.UInt4 or TensorDataType.Float4E2M1
            or TensorDataType.Float8E4M3FN or TensorDataType.Float8E4M3FNUZ
            or TensorDataType.Float8E5M2 or TensorDataType.Float8E5M2FNUZ => typeof(T) == typeof(byte),
        _ => false,
    };

    public static TensorDataType For<T>() where T : unmanaged =>
        typeof(T) == typeof(float) ? TensorDataType.Float :
        typeof(T) == typeof(Half) ? TensorDataType.Float16 :
        typeof(T) == typeof(BFloat16) ? TensorDataType.BFloat16 :
        typeof(T) == typeof(double) ? TensorDataType.Double :
        typeof(T) == typeof(sbyte) ? TensorDataType.Int8 :
        typeof(T) == typeof(byte) ? TensorDataType.UInt8 :
        typeof(T) == typeof(short) ? TensorDataType.Int16 :
        typeof(T) == typeof(ushort) ? TensorDataType.UInt16 :
        typeof(T) == typeof(int) ? TensorDataType.Int32 :
        typeof(T) == typeof(uint) ? TensorDataType.UInt32 :
        typeof(T) == typeof(long) ? TensorDataType.Int64 :
        typeof(T) == typeof(ulong) ? TensorDataType.UInt64 :
        typeof(T) == typeof(bool) ? TensorDataType.Bool :
        throw new NotSupportedException($"No ONNX data type for {typeof(T).Name}.");
}

/// <summary>A tensor whose stored data does not match its declared type and shape.</summary>
public sealed class TensorFormatException(string message) : Exception(message);
