using Microsoft.ML.OnnxRuntime;

namespace OnnxOutlierTools.Runtime;

/// <summary>Where a session runs.</summary>
public enum ExecutionDevice
{
    /// <summary>CUDA when its libraries load, otherwise the CPU (reported in one line).</summary>
    Auto,
    Cpu,
    /// <summary>CUDA or a <see cref="RuntimeSetupException"/>.</summary>
    Cuda,
}

/// <summary>How <see cref="SessionFactory"/> builds an ONNX Runtime session.</summary>
public sealed record SessionSettings
{
    public ExecutionDevice Device { get; init; } = ExecutionDevice.Auto;

    /// <summary>ORT graph optimization level. Comparisons of an original and a rewritten model run
    /// both with <see cref="GraphOptimizationLevel.ORT_DISABLE_ALL"/> (or both with the same level).</summary>
    public GraphOptimizationLevel Optimization { get; init; } = GraphOptimizationLevel.ORT_ENABLE_ALL;

    public int CudaDeviceId { get; init; }

    /// <summary>Intra-op threads; 0 lets ORT choose (one per physical core).</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>Receives the one-line note when <see cref="ExecutionDevice.Auto"/> falls back to the CPU.</summary>
    public Action<string>? OnDeviceNote { get; init; }

    /// <summary>Settings for equivalence checks: CPU, optimizations off, one thread.</summary>
    public static SessionSettings CpuUnoptimized { get; } = new()
    {
        Device = ExecutionDevice.Cpu,
        Optimization = GraphOptimizationLevel.ORT_DISABLE_ALL,
        IntraOpThreads = 1,
    };
}

/// <summary>A session could not be set up (execution provider unavailable, model rejected by ORT).
/// <see cref="Exception.Message"/> is one line, fit to show a user as is.</summary>
public sealed class RuntimeSetupException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>ONNX Runtime failed while running a model. The message is one line naming the model.</summary>
public sealed class ModelRunException(string message, Exception? inner = null) : Exception(message, inner);
