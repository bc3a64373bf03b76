namespace OnnxOutlierTools.Quantization.Int4;

/// <summary>How the int4 weights are written into the graph.</summary>
public enum Int4Format
{
    /// <summary>com.microsoft MatMulNBits (bits 4): ONNX Runtime's fused kernel, [N, k_blocks, block_size / 2] packed codes.</summary>
    MatMulNBits,
    /// <summary>The standard opset-21 form: an INT4/UINT4 initializer, a blocked DequantizeLinear (axis, block_size) and the
    /// original MatMul/Gemm. The model's default opset is raised to 21 (<see cref="Opset21Upgrade"/>).</summary>
    BlockedDequantize,
}

/// <summary>The definition of an int4 weight-only quantization (SCIENCE.md 3), checked at construction: round-to-nearest
/// per block of <see cref="BlockSize"/> input channels of every output channel, one scale per block (in the compute type of
/// the linear: fp32 or fp16) and, when asymmetric, a 4-bit zero point per block.
/// <para>Symmetric (ORT's MLAS convention): scale = w_e / -8 with w_e the block's element of largest magnitude, so w_e is
/// code -8 exactly and the rest round into [-8, 7]. Asymmetric: the range [min(w, 0), max(w, 0)] over 15 steps, zero point
/// round(-min / scale) in [0, 15]. Codes are round-half-to-even of w / scale (the stored, rounded scale) plus the zero point,
/// clamped.</para></summary>
public sealed record Int4Settings
{
    public Int4Settings(Int4Format format = Int4Format.MatMulNBits, int blockSize = 32, bool symmetric = true, int accuracyLevel = 0,
        bool includeLmHead = false)
    {
        if (!Enum.IsDefined(format)) throw new ArgumentOutOfRangeException(nameof(format), format, "unknown int4 format");
        if (blockSize is not (16 or 32 or 64 or 128 or 256))
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "the block size must be 16, 32, 64, 128 or 256 (a power of two >= 16, as MatMulNBits requires)");
        if (accuracyLevel is < 0 or > 4)
            throw new ArgumentOutOfRangeException(nameof(accuracyLevel), accuracyLevel, "accuracy_level must be 0 (unset), 1 (fp32), 2 (fp16), 3 (bf16) or 4 (int8)");
        if (format == Int4Format.BlockedDequantize && accuracyLevel != 0)
            throw new ArgumentException("accuracy_level is an attribute of MatMulNBits; the blocked DequantizeLinear form has none", nameof(accuracyLevel));
        Format = format;
        BlockSize = blockSize;
        Symmetric = symmetric;
        AccuracyLevel = accuracyLevel;
        IncludeLmHead = includeLmHead;
    }

    public Int4Format Format { get; }
    public int BlockSize { get; }
    public bool Symmetric { get; }
    /// <summary>MatMulNBits' accuracy_level: 0 unset (A is used as is), 4 = A quantized to int8 per block inside the kernel
    /// (the genai builder's CPU default, fast, and sensitive to activation outliers).</summary>
    public int AccuracyLevel { get; }
    /// <summary>Quantize the LM head too (a tied embedding table keeps its float copy for the Gather).</summary>
    public bool IncludeLmHead { get; }
    /// <summary>Quantize only the linears whose weight initializer is named here (one site at a time, for error attribution);
    /// null: every selected linear.</summary>
    public IReadOnlySet<string>? OnlyWeights { get; init; }

    public override string ToString() =>
        $"int4 {(Format == Int4Format.MatMulNBits ? "MatMulNBits" : "DequantizeLinear-21")}, block {BlockSize}, {(Symmetric ? "symmetric" : "asymmetric")}" +
        (Format == Int4Format.MatMulNBits ? $", accuracy_level {AccuracyLevel}" : "") + (IncludeLmHead ? ", LM head included" : "");
}

/// <summary>A model or weight the int4 quantizer cannot handle: one line naming the tensor and the problem (the CLI maps it to
/// exit code 2).</summary>
public sealed class Int4QuantizationException(string message, Exception? inner = null) : Exception(message, inner);
