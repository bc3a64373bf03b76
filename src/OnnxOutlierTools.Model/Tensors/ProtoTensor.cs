using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Onnx.Protobuf;

namespace OnnxOutlierTools.Tensors;

/// <summary>A no-copy view of a tensor embedded in the protobuf. raw_data is used in place; the typed
/// fields (float_data, int32_data, ...) are converted to the raw layout once, on first access.</summary>
public sealed class ProtoTensor : Tensor
{
    private readonly TensorProto _proto;
    private byte[]? _converted;

    public ProtoTensor(TensorProto proto) : base((TensorDataType)proto.DataType, proto.Dims.ToArray())
    {
        _proto = proto;
        Validate();
    }

    public override TensorStorage Storage => TensorStorage.Embedded;
    public override TensorProto Source => _proto;

    /// <summary>STRING tensor contents.</summary>
    public IReadOnlyList<Google.Protobuf.ByteString> Strings => _proto.StringData;

    public override ReadOnlySpan<byte> GetBytes(long offset, int length)
    {
        ReadOnlySpan<byte> all = _proto.HasRawData ? _proto.RawData.Span : (_converted ??= ConvertTypedFields());
        return all.Slice(checked((int)offset), length);
    }

    /// <summary>Checks that the stored data matches the declared type and shape (cheap: lengths only).</summary>
    private void Validate()
    {
        if (!DataType.IsKnown()) throw new TensorFormatException($"unknown data type {(int)DataType}");
        if (DataType == TensorDataType.String)
        {
            if (_proto.StringData.Count != ElementCount)
                throw new TensorFormatException($"STRING tensor declares {ElementCount} elements but holds {_proto.StringData.Count}");
            return;
        }
        if (_proto.HasRawData)
        {
            if (_proto.RawData.Length != ByteLength)
                throw new TensorFormatException($"raw_data has {_proto.RawData.Length} bytes, {DataType.OnnxName()}[{string.Join(",", Dims)}] needs {ByteLength}");
            return;
        }
        long stored = TypedFieldCount();
        long expected = DataType switch
        {
            TensorDataType.Complex64 or TensorDataType.Complex128 => ElementCount * 2,
            TensorDataType.Int4 or TensorDataType.UInt4 or TensorDataType.Float4E2M1 => Int4Packing.PackedLength(ElementCount),
            _ => ElementCount,
        };
        if (stored != expected)
            throw new TensorFormatException($"{DataType.OnnxName()}[{string.Join(",", Dims)}] holds {stored} typed values, expected {expected}");
    }

    private long TypedFieldCount() => DataType switch
    {
        TensorDataType.Float or TensorDataType.Complex64 => _proto.FloatData.Count,
        TensorDataType.Double or TensorDataType.Complex128 => _proto.DoubleData.Count,
        TensorDataType.Int64 => _proto.Int64Data.Count,
        TensorDataType.UInt32 or TensorDataType.UInt64 => _proto.Uint64Data.Count,
        _ => _proto.Int32Data.Count,
    };

    private byte[] ConvertTypedFields()
    {
        var bytes = new byte[ByteLength];
        switch (DataType)
        {
            case TensorDataType.Float or TensorDataType.Complex64:
                CopyRaw(_proto.FloatData, bytes);
                break;
            case TensorDataType.Double or TensorDataType.Complex128:
                CopyRaw(_proto.DoubleData, bytes);
                break;
            case TensorDataType.Int64:
                CopyRaw(_proto.Int64Data, bytes);
                break;
            case TensorDataType.UInt64:
                CopyRaw(_proto.Uint64Data, bytes);
                break;
            case TensorDataType.UInt32:
                for (int i = 0; i < _proto.Uint64Data.Count; i++)
                    BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(i * 4), (uint)_proto.Uint64Data[i]);
                break;
            case TensorDataType.Int32:
                CopyRaw(_proto.Int32Data, bytes);
                break;
            case TensorDataType.Int16 or TensorDataType.UInt16 or TensorDataType.Float16 or TensorDataType.BFloat16:
                // 16-bit types hold one element per int32 (the bit pattern in the low half).
                for (int i = 0; i < _proto.Int32Data.Count; i++)
                    BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i * 2), (ushort)_proto.Int32Data[i]);
                break;
            default:
                // 8-bit types and packed 4-bit pairs: one byte per int32.
                for (int i = 0; i < _proto.Int32Data.Count; i++) bytes[i] = (byte)_proto.Int32Data[i];
                break;
        }
        return bytes;
    }

    /// <summary>Typed field values in their little-endian raw layout, written straight into the result.</summary>
    private static void CopyRaw<T>(Google.Protobuf.Collections.RepeatedField<T> field, byte[] destination) where T : unmanaged
    {
        var values = MemoryMarshal.Cast<byte, T>(destination.AsSpan());
        for (int i = 0; i < field.Count; i++) values[i] = field[i];
    }
}
