using System.Runtime.InteropServices;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Quantization.Int4;

/// <summary>Reads elements of a FLOAT / FLOAT16 / BFLOAT16 tensor as fp32, from wherever it lives (memory-mapped external data,
/// embedded, computed by the folding kernel), without reading more than asked.</summary>
internal static class WeightReader
{
    public static bool Supports(TensorDataType type) => type is TensorDataType.Float or TensorDataType.Float16 or TensorDataType.BFloat16;

    public static void Read(Tensor tensor, long elementOffset, Span<float> destination)
    {
        switch (tensor.DataType)
        {
            case TensorDataType.Float:
                tensor.CopyTo(elementOffset, destination);
                break;
            case TensorDataType.Float16:
            {
                var buffer = System.Buffers.ArrayPool<Half>.Shared.Rent(destination.Length);
                try
                {
                    var span = buffer.AsSpan(0, destination.Length);
                    tensor.CopyTo(elementOffset * 2, MemoryMarshal.AsBytes(span));
                    FloatConversion.ToSingle(span, destination);
                }
                finally { System.Buffers.ArrayPool<Half>.Shared.Return(buffer); }
                break;
            }
            case TensorDataType.BFloat16:
            {
                var buffer = System.Buffers.ArrayPool<BFloat16>.Shared.Rent(destination.Length);
                try
                {
                    var span = buffer.AsSpan(0, destination.Length);
                    tensor.CopyTo(elementOffset * 2, MemoryMarshal.AsBytes(span));
                    FloatConversion.ToSingle(span, destination);
                }
                finally { System.Buffers.ArrayPool<BFloat16>.Shared.Return(buffer); }
                break;
            }
            default:
                throw new NotSupportedException($"cannot read {tensor.DataType.OnnxName()} as float");
        }
    }

    /// <summary>Writes fp32 values (already representable) as the stored type.</summary>
    public static void Write(ReadOnlySpan<float> values, TensorDataType type, Span<byte> destination)
    {
        switch (type)
        {
            case TensorDataType.Float: MemoryMarshal.AsBytes(values).CopyTo(destination); break;
            case TensorDataType.Float16: FloatConversion.ToHalf(values, MemoryMarshal.Cast<byte, Half>(destination)); break;
            case TensorDataType.BFloat16: FloatConversion.ToBFloat16(values, MemoryMarshal.Cast<byte, BFloat16>(destination)); break;
            default: throw new NotSupportedException($"cannot write {type.OnnxName()} scales");
        }
    }
}
