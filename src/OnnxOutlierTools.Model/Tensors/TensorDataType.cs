namespace OnnxOutlierTools.Tensors;

/// <summary>ONNX TensorProto.DataType values (IR version 11).</summary>
public enum TensorDataType
{
    Undefined = 0,
    Float = 1,
    UInt8 = 2,
    Int8 = 3,
    UInt16 = 4,
    Int16 = 5,
    Int32 = 6,
    Int64 = 7,
    String = 8,
    Bool = 9,
    Float16 = 10,
    Double = 11,
    UInt32 = 12,
    UInt64 = 13,
    Complex64 = 14,
    Complex128 = 15,
    BFloat16 = 16,
    Float8E4M3FN = 17,
    Float8E4M3FNUZ = 18,
    Float8E5M2 = 19,
    Float8E5M2FNUZ = 20,
    UInt4 = 21,
    Int4 = 22,
    Float4E2M1 = 23,
}

public static class TensorDataTypeInfo
{
    /// <summary>Bits per element; 0 for STRING and UNDEFINED (no fixed size).</summary>
    public static int BitsPerElement(this TensorDataType type) => type switch
    {
        TensorDataType.Float or TensorDataType.Int32 or TensorDataType.UInt32 => 32,
        TensorDataType.UInt8 or TensorDataType.Int8 or TensorDataType.Bool => 8,
        TensorDataType.Float8E4M3FN or TensorDataType.Float8E4M3FNUZ
            or TensorDataType.Float8E5M2 or TensorDataType.Float8E5M2FNUZ => 8,
        TensorDataType.UInt16 or TensorDataType.Int16 or TensorDataType.Float16 or TensorDataType.BFloat16 => 16,
        TensorDataType.Int64 or TensorDataType.UInt64 or TensorDataType.Double or TensorDataType.Complex64 => 64,
        TensorDataType.Complex128 => 128,
        TensorDataType.UInt4 or TensorDataType.Int4 or TensorDataType.Float4E2M1 => 4,
        _ => 0,
    };

    public static bool IsKnown(this TensorDataType type) => type is > TensorDataType.Undefined and <= TensorDataType.Float4E2M1;

    public static bool IsFloatingPoint(this TensorDataType type) => type is TensorDataType.Float or TensorDataType.Float16
        or TensorDataType.BFloat16 or TensorDataType.Double;

    public static bool IsInteger(this TensorDataType type) => type is TensorDataType.Int8 or TensorDataType.Int16
        or TensorDataType.Int32 or TensorDataType.Int64 or TensorDataType.UInt8 or TensorDataType.UInt16 or TensorDataType.UInt32 or TensorDataType.UInt64;

    /// <summary>Bytes needed for <paramref name="elementCount"/> elements (sub-byte types are packed, rounded up).</summary>
    public static long ByteLength(this TensorDataType type, long elementCount)
    {
        int bits = type.BitsPerElement();
        if (bits == 0) throw new NotSupportedException($"Data type {type.OnnxName()} has no fixed element size.");
        return checked(elementCount * bits + 7) / 8;
    }

    /// <summary>The upper-case name ONNX uses (FLOAT16, BFLOAT16, ...).</summary>
    public static string OnnxName(this TensorDataType type) => type switch
    {
        TensorDataType.Float => "FLOAT",
        TensorDataType.UInt8 => "UINT8",
        TensorDataType.Int8 => "INT8",
        TensorDataType.UInt16 => "UINT16",
        TensorDataType.Int16 => "INT16",
        TensorDataType.Int32 => "INT32",
        TensorDataType.Int64 => "INT64",
        TensorDataType.String => "STRING",
        TensorDataType.Bool => "BOOL",
        TensorDataType.Float16 => "FLOAT16",
        TensorDataType.Double => "DOUBLE",
        TensorDataType.UInt32 => "UINT32",
        TensorDataType.UInt64 => "UINT64",
        TensorDataType.Complex64 => "COMPLEX64",
        TensorDataType.Complex128 => "COMPLEX128",
        TensorDataType.BFloat16 => "BFLOAT16",
        TensorDataType.Float8E4M3FN => "FLOAT8E4M3FN",
        TensorDataType.Float8E4M3FNUZ => "FLOAT8E4M3FNUZ",
        TensorDataType.Float8E5M2 => "FLOAT8E5M2",
        TensorDataType.Float8E5M2FNUZ => "FLOAT8E5M2FNUZ",
        TensorDataType.UInt4 => "UINT4",
        TensorDataType.Int4 => "INT4",
        TensorDataType.Float4E2M1 => "FLOAT4E2M1",
        TensorDataType.Undefined => "UNDEFINED",
        _ => $"TYPE{(int)type}",
    };
}
