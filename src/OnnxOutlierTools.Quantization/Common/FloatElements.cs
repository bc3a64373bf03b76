using System.Buffers;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Quantization.Common;

/// <summary>Reads elements of a FLOAT, FLOAT16 or BFLOAT16 tensor as fp32 (exact: every fp16 and bf16 value is an fp32
/// value), from any offset, through the tensor's chunked API (a memory-mapped external tensor is never loaded whole).</summary>
public static class FloatElements
{
    public static bool Supports(TensorDataType type) => type is TensorDataType.Float or TensorDataType.Float16 or TensorDataType.BFloat16;

    public static void Read(Tensor tensor, long start, Span<float> destination)
    {
        switch (tensor.DataType)
        {
            case TensorDataType.Float: tensor.CopyTo(start, destination); break;
            case TensorDataType.Float16:
            {
                var half = ArrayPool<Half>.Shared.Rent(destination.Length);
                try
                {
                    tensor.CopyTo<Half>(start, half.AsSpan(0, destination.Length));
                    FloatConversion.ToSingle(half.AsSpan(0, destination.Length), destination);
                }
                finally { ArrayPool<Half>.Shared.Return(half); }
                break;
            }
            case TensorDataType.BFloat16:
            {
                var bf = ArrayPool<BFloat16>.Shared.Rent(destination.Length);
                try
                {
                    tensor.CopyTo<BFloat16>(start, bf.AsSpan(0, destination.Length));
                    FloatConversion.ToSingle(bf.AsSpan(0, destination.Length), destination);
                }
                finally { ArrayPool<BFloat16>.Shared.Return(bf); }
                break;
            }
            default: throw new NotSupportedException($"{tensor.DataType.OnnxName()} is not a float type");
        }
    }
}
